-- POST /v1/answers (JSON): retrieval, generation (<= 64 tokens), citations and the receipt,
-- cycling through the questions in $QUERIES (SciFact's 809 claims, one JSON string a line), each
-- wrk thread from its own offset, so that concurrent answers have different prompts (the same
-- question again would start from its cached prompt prefix).
local queries = {}
local threads = 0
setup = function(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local n = 0
init = function(args)
  for line in io.lines(os.getenv("QUERIES")) do
    queries[#queries + 1] = line
  end
  n = (id or 0) * 400
end
request = function()
  n = n + 1
  local body = string.format('{"question": %s, "datanets": ["corpus"], "max_tokens": 64}', queries[n % #queries + 1])
  return wrk.format("POST", "/v1/answers", {["Content-Type"] = "application/json"}, body)
end
