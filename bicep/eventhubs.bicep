// Event Hubs for boxoffice: one Standard namespace (1 throughput unit: 1 MB/s or 1,000 events/s in),
// with the two hubs the functions bind to (function.json `eventHubName`) and the consumer groups
// they read with (function.json `consumerGroup`). Identity only: no SAS keys are created, and
// disableLocalAuth turns off the keys of the namespace itself.

// The hubs the generate/ingest outputs and the archive_* triggers name.
var hubs = ['bookings', 'payments']

// bronze-archiver: the archive_* triggers; analytics: a spare reader (Stream Analytics, a notebook).
var consumerGroups = ['bronze-archiver', 'analytics']

@description('Event Hubs namespace name (6-50 characters, letters, digits and hyphens).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Partitions per hub. The app sends each order to partition CRC-32(order_id) mod this count of both hubs, so it is given the count as EventHubPartitionCount (reading it from a hub takes more than the Data Sender role of its identity). A Standard hub keeps the count it was created with.')
@minValue(1)
@maxValue(32)
param partitionCount int = 2

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    isAutoInflateEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

// partitionCount partitions per hub, the same on both (an order sits at one partition index of
// both); 1 day of retention (the archive keeps the rest).
resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = [for hubName in hubs: {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: 1
  }
}]

// Every consumer group on every hub: Bicep has no nested loops, so one loop runs over the
// (hub, group) pairs, i / n picking the hub and i % n the group.
resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = [for i in range(0, length(hubs) * length(consumerGroups)): {
  parent: hub[i / length(consumerGroups)]
  name: consumerGroups[i % length(consumerGroups)]
  properties: {}
}]

output namespaceName string = namespace.name
output namespaceId string = namespace.id
// The host name identity-based clients connect to (EventHubConnection__fullyQualifiedNamespace).
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output hubNames array = hubs
// Every hub's partition count: the app's EventHubPartitionCount.
output partitionCount int = partitionCount
