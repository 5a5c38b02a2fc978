#!/usr/bin/env bash
# The web app end to end: a real `tributary serve` on a fresh data directory with the sample
# Datanet (api/demo-datanet) and a local anvil with the contracts deployed, and headless Chromium (Debian's, with a fresh profile and
# background networking off) driven by playwright-core through web/tests/e2e.mjs. Screenshots
# (1280x800 and 390x844) and the server's log land in target/web-test/ (WEB_TEST_OUT).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cargo build --locked --quiet -p tributary
bin="$PWD/target/debug/tributary"
out="${WEB_TEST_OUT:-$PWD/target/web-test}"
rm -rf "$out"
mkdir -p "$out"
data="$(mktemp -d)"
export TRIBUTARY_DATA_DIR="$data"
server=""
anvil=""
cleanup() {
  for pid in $server $anvil; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A local chain (anvil from npm, installed by setup.sh): the payout contract takes carol's
# deposit and the settled epoch, and pays claims.
chain_port="$(free_port)"
contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil --host 127.0.0.1 --port "$chain_port" \
  --chain-id 31337 >"$out/anvil.log" 2>&1 &
anvil=$!
export TRIBUTARY_RPC_URL="http://127.0.0.1:$chain_port"
# Anvil's first development key (alice's): the server's signer, who deploys and settles.
export TRIBUTARY_SIGNER_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
for _ in $(seq 1 100); do
  if curl -fsS -X POST -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$TRIBUTARY_RPC_URL" >/dev/null 2>&1; then break; fi
  sleep 0.2
done

# Hardhat/anvil's well-known development accounts: alice owns the sample Datanet and
# contributes to it with bob; carol pays for questions; dave is a stranger; the protocol's
# share goes to a treasury.
alice=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
bob=0x70997970C51812dc3A010C7d01b50e0d17dc79C8
carol=0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
dave=0x90F79bf6EB2c4f870365E785982E1f101E93b906
treasury=0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65
"$bin" pricing set --protocol-account "$treasury" >/dev/null
"$bin" datanet create rivers-demo --owner "$alice" \
  --description "How rivers, tributaries and watersheds work: the sample Datanet" >/dev/null
"$bin" ingest --datanet rivers-demo --contributor "$alice" --license CC-BY-4.0 api/demo-datanet/alice/* >/dev/null
"$bin" ingest --datanet rivers-demo --contributor "$bob" --license CC-BY-4.0 api/demo-datanet/bob/* >/dev/null
key() { "$bin" apikey create --role "$1" ${2:+--address "$2"} --label "$3" 2>/dev/null; }
export WEB_ADMIN_KEY="$(key admin "" operator)"
export WEB_OWNER_KEY="$(key owner "$alice" alice)"
export WEB_CONTRIBUTOR_KEY="$(key contributor "$bob" bob)"
export WEB_PAYER_KEY="$(key reader "$carol" carol)"
export WEB_STRANGER_KEY="$(key owner "$dave" dave)"
"$bin" chain deploy >/dev/null
"$bin" chain deposit "$carol" 1000000000000000000 >/dev/null

port="$(free_port)"
"$bin" serve --bind "127.0.0.1:$port" --chain-sync-secs 1 >"$out/server.log" 2>&1 &
server=$!
export WEB_URL="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  if curl -fsS "$WEB_URL/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$out/server.log" >&2; exit 1; fi
  sleep 0.5
done
curl -fsS "$WEB_URL/readyz" >/dev/null
export WEB_TEST_OUT="$out" WEB_ALICE="$alice" WEB_BOB="$bob" WEB_CAROL="$carol" WEB_TREASURY="$treasury"
node --test web/tests/e2e.test.mjs
