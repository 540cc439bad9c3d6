# The worker image (azure.yaml, service `worker`; bicep/workers.bicep runs it on Container Apps).
# The build context is dist/worker, where `scripts/package --worker-out dist/worker` (the
# service's prepackage hook) puts the statically linked `boxoffice`: nothing is compiled here,
# so azd's remote build in the registry takes seconds. distroless/static has what a static
# binary needs at run time and nothing else: CA certificates (TLS to the lake), /etc/passwd
# with the nonroot user, /tmp, no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot

COPY boxoffice /boxoffice

# Every setting comes from the container app's environment (bicep/workers.bicep): the lake
# (BOXOFFICE_LAKE), the identity (AZURE_CLIENT_ID, with the platform's IDENTITY_ENDPOINT) and
# the join's split (BOXOFFICE_JOBS_PARTITIONS_PER_HUB, BOXOFFICE_JOBS_SHARDS). SIGTERM (a scale-in
# or a new revision) ends it after a last cycle, each shard checkpointed and released.
ENTRYPOINT ["/boxoffice", "worker"]
