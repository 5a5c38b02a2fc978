-- POST /v1/search, k = 10, cycling through the queries in $QUERIES (one JSON string a line;
-- load.sh writes SciFact's 809 claims there): each query comes back every 809 requests, so
-- after the first pass the server's query cache answers the embedding.
local queries = {}
init = function(args)
  for line in io.lines(os.getenv("QUERIES")) do
    queries[#queries + 1] = line
  end
end
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"query": %s, "datanets": ["corpus"], "k": 10}', queries[n % #queries + 1])
  return wrk.format("POST", "/v1/search", {["Content-Type"] = "application/json"}, body)
end
