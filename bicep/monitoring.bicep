// Monitoring: a Log Analytics workspace and a workspace-based Application Insights component.
// Local (instrumentation-key) authentication is off, as in the Flex Consumption samples: the
// Functions host sends telemetry with its managed identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, and Monitoring Metrics Publisher in rbac.bicep).

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Days Log Analytics keeps data (30 is included in the per-GB price).')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output name string = appInsights.name
output id string = appInsights.id
output connectionString string = appInsights.properties.ConnectionString
output logAnalyticsName string = workspace.name
output logAnalyticsId string = workspace.id
