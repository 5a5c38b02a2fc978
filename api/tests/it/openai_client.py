"""The official OpenAI Python client against `tributary serve` (run by api/tests/it/serve.rs).

usage: openai_client.py BASE_URL DATANET API_KEY BROKE_KEY
(reader keys whose addresses pay: API_KEY's has a balance, BROKE_KEY's has none)
Prints one JSON line with what it saw; exits non-zero on any mismatch.
"""
import json
import sys

import openai

base_url, datanet = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=sys.argv[3], max_retries=0)
question = "What is the longest river in North America?"

models = [m.id for m in client.models.list()]
assert "base" in models and f"base@{datanet}" in models, models

# A payer whose balance is short is refused before anything is generated: 402, with the quote.
broke = openai.OpenAI(base_url=f"{base_url}/v1", api_key=sys.argv[4], max_retries=0)
try:
    broke.chat.completions.create(model=f"base@{datanet}", messages=[{"role": "user", "content": question}])
    raise AssertionError("a payer without a balance was answered")
except openai.APIStatusError as e:
    assert e.status_code == 402 and e.body["code"] == "insufficient_balance", (e.status_code, e.body)
    assert int(e.body["quote"]) > 0 and e.body["balance"] == "0", e.body

completion = client.chat.completions.create(
    model="base",
    messages=[{"role": "user", "content": question}],
    max_tokens=48,
    extra_body={"datanets": [datanet]},
)
message = completion.choices[0].message
assert message.role == "assistant" and message.content, completion
extension = completion.model_extra["tributary"]
assert extension["receipt_id"] and extension["citations"], extension
assert completion.usage.completion_tokens > 0
# The answer's cost, in `usage`: what its payer was charged, the receipt's fee.
cost = completion.usage.model_extra["cost"]
assert int(cost) > 0 and cost == extension["fee"], (completion.usage, extension["fee"])
assert completion.usage.model_extra["paid_by"] == "payer", completion.usage

# A model bound to the Datanet: no extension field needed.
chunks = list(
    client.chat.completions.create(
        model=f"base@{datanet}",
        messages=[{"role": "user", "content": question}],
        max_tokens=48,
        stream=True,
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
last = chunks[-1]
assert last.choices[0].finish_reason in ("stop", "length"), last
stream_extension = last.model_extra["tributary"]
assert stream_extension["receipt_id"] != extension["receipt_id"]
assert streamed.strip() == message.content.strip(), (streamed, message.content)

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}],
                                   extra_body={"datanets": [datanet]})
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "adapter_not_found", e.body

print(json.dumps({"models": models, "answer": message.content, "receipt_id": extension["receipt_id"], "cost": cost,
                  "stream_receipt_id": stream_extension["receipt_id"], "chunks": len(chunks)}))
