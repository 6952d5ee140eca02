-- The request mix of Scripts/load.sh: 80 % product lookups, 15 % reservations, 5 % low-stock
-- reports, over the 1000 products the server seeds.
math.randomseed(os.time())

request = function()
    local roll = math.random(100)
    local sku = "SKU-" .. math.random(0, 999)
    if roll <= 80 then
        return wrk.format("GET", "/products/" .. sku)
    elseif roll <= 95 then
        return wrk.format("POST", "/products/" .. sku .. "/reservations?quantity=1&order=load")
    else
        return wrk.format("GET", "/low-stock?below=10")
    end
end

-- Counts responses that are not 2xx, which the script reports.
local failures = 0
response = function(status, headers, body)
    if status >= 300 then failures = failures + 1 end
end
