// The Functions app: a Flex Consumption (FC1) plan, a user-assigned managed identity, and a
// Linux function app running the `boxoffice` custom handler (host.json customHandler).
// Shape copied from the Flex Consumption samples (Azure-Samples/azure-functions-flex-consumption-samples,
// the functions-quickstart-*-azd templates): runtime, scale and deployment live in
// properties.functionAppConfig, not in app settings. Flex rejects or ignores FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENTSHARE and the like, so none
// is set here.

@description('Function app name (globally unique: it becomes <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('User-assigned managed identity name.')
param identityName string

@description('Azure region (one where Flex Consumption is offered: az functionapp list-flexconsumption-locations).')
param location string

@description('Tags for every resource; the site also gets azd-service-name.')
param tags object = {}

@description('functionAppConfig.runtime.name. The Flex stacks data lists custom (custom handler) with version 1.0.')
param runtimeName string = 'custom'

@description('functionAppConfig.runtime.version.')
param runtimeVersion string = '1.0'

@description('Most instances the app scales out to (Flex: 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Host storage account (AzureWebJobsStorage and the deployment container).')
param hostAccountName string

@description('Blob container on the host account that holds the deployed package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Event Hubs namespace host, <namespace>.servicebus.windows.net.')
param eventHubFullyQualifiedNamespace string

@description('Partition count of both hubs (eventhubs.bicep partitionCount): P of the co-partitioning rule, partition CRC-32(order_id) mod P.')
@minValue(1)
param eventHubPartitionCount int

@description('The lake (ADLS Gen2) account name.')
param lakeAccountName string

@description('The lake URL, abfss://{layer}@<account>.dfs.core.windows.net/ with a literal {layer}.')
param lakeUrl string

@description('Whether run_jobs runs the lake jobs (false when Container Apps workers run them: the timer is then disabled).')
param runJobs bool = true

@description('Events per second the generate timer produces (each tick sends the seconds since the last).')
param generateRate string = '2'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the target of the service by this tag (azure.yaml: services.functions).
  tags: union(tags, { 'azd-service-name': 'functions' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          // azd (and func publish) upload the zip here; the app mounts it at start.
          type: 'blobContainer'
          value: '${hostAccount.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: runtimeName
        version: runtimeVersion
      }
    }
  }
}

// App settings: one per line, keys quoted (tests/deploy.rs reads them line by line).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Storage for the host itself, identity-based: __accountName derives the blob/queue/table URIs.
    'AzureWebJobsStorage__accountName': hostAccount.name
    'AzureWebJobsStorage__credential': 'managedidentity'
    'AzureWebJobsStorage__clientId': identity.properties.clientId
    // function.json `connection: EventHubConnection`, identity-based.
    'EventHubConnection__fullyQualifiedNamespace': eventHubFullyQualifiedNamespace
    'EventHubConnection__credential': 'managedidentity'
    'EventHubConnection__clientId': identity.properties.clientId
    // Telemetry with Entra ID (the component has local auth disabled).
    'APPLICATIONINSIGHTS_CONNECTION_STRING': appInsightsConnectionString
    'APPLICATIONINSIGHTS_AUTHENTICATION_STRING': 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // boxoffice: the lake, one container per layer.
    'BOXOFFICE_LAKE': lakeUrl
    // The Azure client of object_store uses it to ask the managed identity endpoint for this identity.
    'AZURE_CLIENT_ID': identity.properties.clientId
    'AZURE_STORAGE_ACCOUNT_NAME': lakeAccountName
    'BOXOFFICE_GENERATE_RATE': generateRate
    // auto: generate and ingest send co-partitioned over REST, with Entra tokens of the identity
    // above (EventHubConnection__clientId, from the app's identity endpoint); the output bindings
    // only where REST cannot work (the emulator locally).
    'BOXOFFICE_SEND_VIA': 'auto'
    // P of partition CRC-32(order_id) mod P, given: reading it from a hub takes more than Data Sender.
    'EventHubPartitionCount': string(eventHubPartitionCount)
    // The join's split: one shard per partition, the same whoever runs it (run_jobs here, or the
    // Container Apps workers), so switching between them needs no migration (docs/scale.md).
    'BOXOFFICE_JOBS_PARTITIONS_PER_HUB': string(eventHubPartitionCount)
    'BOXOFFICE_JOBS_SHARDS': string(eventHubPartitionCount)
    // run_jobs off when Container Apps workers run the jobs (its leases would keep it from
    // running beside them anyway: every tick would fail naming the worker that holds them).
    'AzureWebJobs.run_jobs.Disabled': runJobs ? 'false' : 'true'
    // The job bundle, its azure target, and the account named by the lake URL of that target.
    'BOXOFFICE_BUNDLE': 'bundle.yml'
    'BUNDLE_TARGET': 'azure'
    'BUNDLE_VAR_storage_account': lakeAccountName
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output uri string = 'https://${site.properties.defaultHostName}'
output identityId string = identity.id
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
