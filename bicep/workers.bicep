// Workers on Azure Container Apps: `boxoffice worker` processes that stay up, hold the lake's
// shard and job leases, and run the join shards, Gold, cdc, batch_load and maintenance
// (docs/scale.md, Workers). infra/main.bicep deploys this module only when its `workers`
// parameter is `containerapps`; then the Functions app keeps generate, ingest and the archive
// triggers, and its run_jobs timer is disabled (functionapp.bicep).
//
// - a Container Apps environment (workload profiles, Consumption), logs to Log Analytics through
//   a diagnostic setting (no workspace key);
// - a container registry that azd builds the worker image in (azure.yaml, service `worker`:
//   docker/worker.Dockerfile, remote build);
// - a user-assigned identity for the worker: it pulls the image, reads and writes the lake, and
//   the scale rules use it to read the archive's lag;
// - the container app: one replica at least, at most one per shard, scaled on the lag of the
//   archive triggers' consumer group.
// azd finds the app by its azd-service-name tag and deploys the image it built to it.

@description('Azure region.')
param location string

@description('Tags for every resource; the container app also gets azd-service-name.')
param tags object = {}

@description('Container Apps environment name.')
param environmentName string

@description('Container app name (2-32 lowercase letters, digits and hyphens).')
param appName string

@description('Container registry name (5-50 letters and digits, globally unique).')
param registryName string

@description('User-assigned managed identity of the worker.')
param identityName string

@description('Resource id of the Log Analytics workspace the environment sends its logs to.')
param logAnalyticsWorkspaceId string

@description('The lake (ADLS Gen2) account name.')
param lakeAccountName string

@description('The lake URL, abfss://{layer}@<account>.dfs.core.windows.net/ with a literal {layer}.')
param lakeUrl string

@description('The Functions host storage account: the archive triggers keep their Event Hubs checkpoints there, which the scale rules read.')
param hostAccountName string

@description('Event Hubs namespace name (without .servicebus.windows.net).')
param eventHubNamespaceName string

@description('The hubs the archive triggers read (eventhubs.bicep hubNames).')
param hubNames array

@description('The consumer group of the archive triggers (archive_*/function.json consumerGroup).')
param archiveConsumerGroup string = 'bronze-archiver'

@description('Partitions per hub (eventhubs.bicep partitionCount). The join gets one shard per partition, so more replicas than this would idle.')
@minValue(1)
param partitionCount int

@description('Replicas that always run (at least 1: the workers hold the lake jobs\' leases and run Gold).')
@minValue(1)
param minReplicas int = 1

@description('Most replicas; capped at partitionCount (one shard per replica at most).')
@minValue(1)
param maxReplicas int = 2

@description('vCPU per replica (Consumption: 0.25 to 4, in steps of 0.25).')
param cpu string = '0.5'

@description('Memory per replica; Consumption wants 2 GiB per vCPU (0.5 vCPU: 1Gi).')
param memory string = '1Gi'

@description('Events not yet archived, over every partition of a hub, per replica: the scale rules ask for ceil(lag / this) replicas.')
@minValue(1)
param lagPerReplica int = 10000

@description('Whether the container app exists already (azd sets SERVICE_WORKER_RESOURCE_EXISTS): then a new provision keeps the image azd deployed instead of the placeholder.')
param exists bool = false

// Until azd deploys the worker image, the app runs this public placeholder (it ignores the
// worker settings); the image's ENTRYPOINT is what runs `boxoffice worker` afterwards.
var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'

// Built-in role definition ids (docs/azure.md, Identity and roles).
var roles = {
  acrPull: '7f951dca-d3f6-4d6b-a7f5-1c66d4eb5a3b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

resource registry 'Microsoft.ContainerRegistry/registries@2025-04-01' = {
  name: registryName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeAccountName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

// The app pulls its image with the identity.
resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, identity.id, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The workers read Bronze and write Silver, Gold, the leases and their checkpoints.
resource lakeContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lake.id, identity.id, roles.storageBlobDataContributor)
  scope: lake
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The scale rules read the archive triggers' checkpoints (container azure-webjobs-eventhub)...
resource checkpointReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, identity.id, roles.storageBlobDataReader)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ...and each partition's last sequence number, from the namespace.
resource hubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, identity.id, roles.eventHubsDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource cae 'Microsoft.App/managedEnvironments@2025-01-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    // Console and system logs go through Azure Monitor (the diagnostic setting below).
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-workspace'
  scope: cae
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'ContainerAppConsoleLogs'
        enabled: true
      }
      {
        category: 'ContainerAppSystemLogs'
        enabled: true
      }
    ]
  }
}

// The image azd deployed last, when the app exists (a module: a template cannot both read and
// deploy the same resource).
module current 'workers-image.bicep' = {
  name: 'worker-image'
  params: {
    exists: exists
    appName: appName
  }
}

// One rule per hub: the lag of the archive triggers, read the way the Functions Event Hubs
// extension (5.x and later) stores it: blob metadata in azure-webjobs-eventhub on the host
// account, at <namespace>.servicebus.windows.net/<hub>/<consumer group>/checkpoint/<partition>.
var lagRules = [for hub in hubNames: {
  name: 'archive-lag-${hub}'
  custom: {
    type: 'azure-eventhub'
    identity: identity.id
    metadata: {
      eventHubNamespace: eventHubNamespaceName
      eventHubName: hub
      consumerGroup: archiveConsumerGroup
      storageAccountName: hostAccountName
      blobContainer: 'azure-webjobs-eventhub'
      checkpointStrategy: 'blobMetadata'
      unprocessedEventThreshold: string(lagPerReplica)
    }
  }
}]

resource app 'Microsoft.App/containerApps@2025-01-01' = {
  name: appName
  location: location
  // azd finds the target of the service by this tag (azure.yaml: services.worker).
  tags: union(tags, { 'azd-service-name': 'worker' })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  dependsOn: [
    acrPull
    environmentLogs
  ]
  properties: {
    environmentId: cae.id
    workloadProfileName: 'Consumption'
    configuration: {
      // One revision at a time: a new image starts new workers, which take shards over from the
      // old ones as those stop (leases; docs/scale.md).
      activeRevisionsMode: 'Single'
      registries: [
        {
          server: registry.properties.loginServer
          identity: identity.id
        }
      ]
    }
    template: {
      // A stopping worker runs a last cycle, checkpoints and releases its shards.
      terminationGracePeriodSeconds: 90
      containers: [
        {
          name: 'worker'
          image: exists ? current.outputs.image : placeholderImage
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          // What `boxoffice worker` reads: one entry per line (tests/deploy_workers.rs reads them).
          env: [
            { name: 'BOXOFFICE_LAKE', value: lakeUrl }
            { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
            { name: 'BOXOFFICE_JOBS_PARTITIONS_PER_HUB', value: string(partitionCount) }
            { name: 'BOXOFFICE_JOBS_SHARDS', value: string(partitionCount) }
          ]
        }
      ]
      scale: {
        minReplicas: min(minReplicas, partitionCount)
        maxReplicas: max(min(maxReplicas, partitionCount), min(minReplicas, partitionCount))
        rules: lagRules
      }
    }
  }
}

output name string = app.name
output registryName string = registry.name
output registryLoginServer string = registry.properties.loginServer
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output environmentName string = cae.name
