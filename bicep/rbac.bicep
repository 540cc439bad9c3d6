// Role assignments: the user-assigned identity of the function app gets exactly what it uses, and the
// deploying user (optional) may read the lake, for Power BI.

// Built-in role definition ids (docs/azure.md; Storage Blob Data Reader for the user).
var roles = {
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
}

@description('Event Hubs namespace name.')
param eventHubNamespaceName string

@description('Lake (ADLS Gen2) account name.')
param lakeAccountName string

@description('Functions host storage account name.')
param hostAccountName string

@description('Application Insights component name.')
param appInsightsName string

@description('Principal (object) id of the function app managed identity.')
param principalId string

@description('Object id of the deploying user; empty skips the user role.')
param userPrincipalId string = ''

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeAccountName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// generate and ingest send to both hubs.
resource eventHubsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, roles.eventHubsDataSender)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The archive_* triggers read both hubs.
resource eventHubsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, roles.eventHubsDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The lake: the archive, the jobs and the quarantine of ingest write Delta tables.
resource lakeContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lake.id, principalId, roles.storageBlobDataContributor)
  scope: lake
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The host account: keys, timer locks, Event Hubs checkpoints, and the deployment package
// (the Flex samples grant Owner here).
resource hostOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, principalId, roles.storageBlobDataOwner)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with Entra ID (Application Insights has local auth disabled).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The deploying user reads the lake (DeltaLake.Table in Power BI, over gold); only when known.
resource lakeReaderUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(lake.id, userPrincipalId, roles.storageBlobDataReader)
  scope: lake
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: userPrincipalId
    principalType: 'User'
  }
}
