-- POST /v1/answers (JSON): retrieval, generation (<= 64 tokens), citations and the receipt.
local questions = {
  "Does vitamin D deficiency increase fracture risk?", "How do bacteria become resistant to antibiotics?",
  "What regulates apoptosis in cancer cells?", "Does exercise improve insulin sensitivity?",
}
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"question": "%s", "datanets": ["corpus"], "max_tokens": 64}', questions[n % #questions + 1])
  return wrk.format("POST", "/v1/answers", {["Content-Type"] = "application/json"}, body)
end
