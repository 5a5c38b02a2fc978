-- POST /v1/search with a rotating set of SciFact-like queries.
local queries = {
  "vitamin D deficiency and bone fractures", "antibiotic resistance in hospital infections",
  "gene expression in tumour cells", "effects of exercise on insulin sensitivity",
  "microRNA regulation of apoptosis", "T cell response to viral infection",
  "statin therapy and cardiovascular outcomes", "stem cell differentiation pathways",
}
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"query": "%s", "datanets": ["corpus"], "k": 10}', queries[n % #queries + 1])
  return wrk.format("POST", "/v1/search", {["Content-Type"] = "application/json"}, body)
end
