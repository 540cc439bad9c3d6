// boxoffice on Azure, provisioned by `azd up` (azure.yaml at the repository root):
// a resource group holding Event Hubs, the lake (ADLS Gen2), the Functions host storage,
// monitoring, the Flex Consumption function app with its user-assigned identity, and the
// role assignments between them; with workers = 'containerapps', also the worker container app
// (bicep/workers.bicep). Modules live in ../bicep/.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region for every resource; Flex Consumption must be offered there (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Flex Consumption runtime name (functionAppConfig.runtime.name): custom for a custom handler.')
param functionsRuntimeName string = 'custom'

@description('Flex Consumption runtime version (functionAppConfig.runtime.version).')
param functionsRuntimeVersion string = '1.0'

@description('Most instances the function app scales out to (Flex: 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each function app instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Where the lake jobs run: functions (the run_jobs timer of the function app, once a minute) or containerapps (boxoffice worker replicas on Azure Container Apps that stay up, one shard of the join each at most; run_jobs is then disabled). docs/azure.md, Where the jobs run.')
@allowed([
  'functions'
  'containerapps'
])
param workers string = 'functions'

@description('containerapps: replicas that always run (at least 1).')
@minValue(1)
param workerMinReplicas int = 1

@description('containerapps: most replicas (capped at the hubs\' partition count, one shard each).')
@minValue(1)
param workerMaxReplicas int = 2

@description('containerapps: vCPU per replica (0.25 to 4).')
param workerCpu string = '0.5'

@description('containerapps: memory per replica, 2 GiB per vCPU (0.5 vCPU: 1Gi).')
param workerMemory string = '1Gi'

@description('containerapps: whether the worker app exists already (azd sets SERVICE_WORKER_RESOURCE_EXISTS), so that a provision keeps its image.')
param workerExists bool = false

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID); gets Storage Blob Data Reader on the lake for Power BI. Empty skips it.')
param principalId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var functionAppName = 'func-${resourceToken}'
// The Flex samples name the deployment container after the app.
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var lakeAccountName = 'stlake${resourceToken}'

// The lake URL boxoffice reads: {layer} is a literal placeholder the app fills per layer
// (bronze, silver, gold, landing, system, ops), one container each.
var lakeUrl = 'abfss://{layer}@${lakeAccountName}.dfs.${environment().suffixes.storage}/'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring '../bicep/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage '../bicep/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    lakeAccountName: lakeAccountName
    hostAccountName: 'sthost${resourceToken}'
    deploymentContainerName: deploymentContainerName
    location: location
    tags: tags
  }
}

module eventhubs '../bicep/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    name: 'evhns-${resourceToken}'
    location: location
    tags: tags
  }
}

module functionapp '../bicep/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    identityName: 'id-func-${resourceToken}'
    location: location
    tags: tags
    runtimeName: functionsRuntimeName
    runtimeVersion: functionsRuntimeVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    hostAccountName: storage.outputs.hostAccountName
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    eventHubFullyQualifiedNamespace: eventhubs.outputs.fullyQualifiedNamespace
    eventHubPartitionCount: eventhubs.outputs.partitionCount
    lakeAccountName: storage.outputs.lakeAccountName
    lakeUrl: lakeUrl
    runJobs: workers == 'functions'
  }
}

// Workers on Container Apps, when chosen: they run the join shards and the lake jobs.
module workerApps '../bicep/workers.bicep' = if (workers == 'containerapps') {
  name: 'workers'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: 'cae-${resourceToken}'
    appName: 'ca-worker-${resourceToken}'
    registryName: 'cr${resourceToken}'
    identityName: 'id-worker-${resourceToken}'
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    lakeAccountName: storage.outputs.lakeAccountName
    lakeUrl: lakeUrl
    hostAccountName: storage.outputs.hostAccountName
    eventHubNamespaceName: eventhubs.outputs.namespaceName
    hubNames: eventhubs.outputs.hubNames
    partitionCount: eventhubs.outputs.partitionCount
    minReplicas: workerMinReplicas
    maxReplicas: workerMaxReplicas
    cpu: workerCpu
    memory: workerMemory
    exists: workerExists
  }
}

module rbac '../bicep/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    eventHubNamespaceName: eventhubs.outputs.namespaceName
    lakeAccountName: storage.outputs.lakeAccountName
    hostAccountName: storage.outputs.hostAccountName
    appInsightsName: monitoring.outputs.name
    principalId: functionapp.outputs.identityPrincipalId
    userPrincipalId: principalId
  }
}

// azd writes these to .azure/<env>/.env (`azd env get-values`).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionapp.outputs.name
output AZURE_FUNCTION_URI string = functionapp.outputs.uri
output EVENTHUB_NAMESPACE string = eventhubs.outputs.fullyQualifiedNamespace
output LAKE_STORAGE_ACCOUNT string = storage.outputs.lakeAccountName
output BOXOFFICE_LAKE string = 'abfss://{layer}@${storage.outputs.lakeAccountName}.dfs.${environment().suffixes.storage}/'
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.name
// Where the lake jobs run; azure.yaml deploys the worker service only when this is true.
output BOXOFFICE_WORKERS_IN_CONTAINER_APPS bool = workers == 'containerapps'
// azd pushes (builds) the worker image to this registry; empty without Container Apps workers.
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = workers == 'containerapps' ? workerApps.outputs.registryLoginServer : ''
output AZURE_WORKER_APP_NAME string = workers == 'containerapps' ? workerApps.outputs.name : ''
