-- Argo CD health check for kms.aliasoperator.dev/KmsAlias. Install it under the key
-- resource.customizations.health.kms.aliasoperator.dev_KmsAlias of the argocd-cm ConfigMap.
--
-- Healthy once Ready; Degraded when Stalled (only a change outside the operator can help);
-- Suspended while paused by annotation; Progressing otherwise, including before the operator
-- has observed the latest spec. Uses only what Argo CD opens for such scripts (no string
-- library).
local health = {status = "Progressing", message = "Waiting for the operator"}
local status = obj.status
if status == nil then
  return health
end

local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  conditions[condition.type] = condition
end

local paused = conditions["Paused"]
if paused ~= nil and paused.status == "True" then
  health.status = "Suspended"
  health.message = paused.message
  return health
end

if status.observedGeneration ~= obj.metadata.generation then
  health.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return health
end

local ready = conditions["Ready"]
local stalled = conditions["Stalled"]
if ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = ready.message
elseif stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = stalled.reason .. ": " .. stalled.message
elseif ready ~= nil then
  health.message = ready.reason .. ": " .. ready.message
end
return health
