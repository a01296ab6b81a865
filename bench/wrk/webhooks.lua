-- wrk script: POST pre-signed webhook deliveries, each once (one per line of the file given
-- after "--": body TAB name:value TAB name:value ...).  Run with -t1 so one state holds them all.
local requests = {}
local next_index = 0

function init(args)
  local path, target = args[1], args[2]
  for line in io.lines(path) do
    local fields = {}
    for field in string.gmatch(line, "[^\t]+") do
      fields[#fields + 1] = field
    end
    local headers = {["Content-Type"] = "application/json"}
    for i = 2, #fields do
      local name, value = string.match(fields[i], "^([^:]+):(.*)$")
      headers[name] = value
    end
    requests[#requests + 1] = wrk.format("POST", target, headers, fields[1])
  end
end

function request()
  next_index = next_index + 1
  if next_index > #requests then
    next_index = 1 -- wrapped: the runner counts rows and refuses a run that sent duplicates
  end
  return requests[next_index]
end
