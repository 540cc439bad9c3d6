// Two storage accounts:
// - the lake: ADLS Gen2 (hierarchical namespace), one container per layer, read and written by
//   delta-rs/object_store over abfss:// with the managed identity of the function app;
// - the host account: what the Functions host itself needs (AzureWebJobsStorage: keys, timer
//   locks, Event Hubs checkpoints) and the blob container Flex Consumption deploys the package to.
// Neither accepts account keys (allowSharedKeyAccess: false): every client uses Entra ID.

// One container per lake layer; `_system` is `system` because container names cannot start with `_`
// (lake/src/layer.rs, Layer::container_name).
var lakeContainers = ['bronze', 'silver', 'gold', 'landing', 'system', 'ops']

@description('Name of the lake account (3-24 lowercase letters and digits).')
param lakeAccountName string

@description('Name of the Functions host account (3-24 lowercase letters and digits).')
param hostAccountName string

@description('Blob container on the host account that Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: lakeAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    isHnsEnabled: true
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource lakeBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: lake
  name: 'default'
}

resource lakeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in lakeContainers: {
  parent: lakeBlobs
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: hostAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: host
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output lakeAccountName string = lake.name
output lakeAccountId string = lake.id
output lakeDfsEndpoint string = lake.properties.primaryEndpoints.dfs
output lakeBlobEndpoint string = lake.properties.primaryEndpoints.blob
output lakeContainerNames array = lakeContainers
output hostAccountName string = host.name
output hostAccountId string = host.id
output hostBlobEndpoint string = host.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
