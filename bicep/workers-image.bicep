// The image the worker container app runs now, if the app exists: a new `azd provision` then
// keeps the image `azd deploy` put there instead of going back to the placeholder.

@description('Whether the container app exists (azd: SERVICE_WORKER_RESOURCE_EXISTS).')
param exists bool

@description('Container app name.')
param appName string

resource deployed 'Microsoft.App/containerApps@2025-01-01' existing = if (exists) {
  name: appName
}

output image string = exists ? deployed.properties.template.containers[0].image : ''
