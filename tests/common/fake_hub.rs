//! A stand-in for the Event Hubs REST endpoints boxoffice uses: send (`POST /<hub>/messages`),
//! send to a partition (`POST /<hub>/partitions/<id>/messages`) and the hub's description
//! (`GET /<hub>`, with `<PartitionCount>`). It records each send and answers the statuses it is
//! scripted to, then 201. A send with `Authorization: Bearer <token>` is answered 401 unless the
//! stand-in identity endpoint it was started with ([`super::fake_identity`]) issued that token
//! for Event Hubs and it has not expired. Event Hubs cannot run here, and its emulator has no
//! REST API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;

use super::fake_identity::{EVENT_HUBS_RESOURCE, FakeIdentity, IdentityState};

/// What the stand-in hub received.
#[derive(Debug, Clone)]
pub struct Received {
    pub hub: String,
    /// The partition id in the path, for a send to a partition.
    pub partition: Option<u32>,
    pub query: String,
    pub content_type: String,
    pub authorization: String,
    pub body: Vec<u8>,
    pub answered: u16,
}

#[derive(Default)]
struct HubState {
    partition_count: u32,
    /// Statuses to answer, in order, before answering 201.
    script: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
    /// The identity endpoint whose tokens are accepted.
    identity: Option<Arc<IdentityState>>,
}

/// The stand-in, on a free port; stops when dropped.
pub struct FakeHub {
    pub port: u16,
    state: Arc<HubState>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeHub {
    /// Hubs of 4 partitions.
    pub fn start(script: &[u16]) -> FakeHub {
        FakeHub::with_partitions(script, 4)
    }

    pub fn with_partitions(script: &[u16], partition_count: u32) -> FakeHub {
        FakeHub::started(script, partition_count, None)
    }

    /// Hubs of `partition_count` partitions that accept the Bearer tokens `identity` issued.
    pub fn with_identity(script: &[u16], partition_count: u32, identity: &FakeIdentity) -> FakeHub {
        FakeHub::started(script, partition_count, Some(Arc::clone(&identity.state)))
    }

    fn started(
        script: &[u16],
        partition_count: u32,
        identity: Option<Arc<IdentityState>>,
    ) -> FakeHub {
        let state = Arc::new(HubState {
            partition_count,
            identity,
            ..HubState::default()
        });
        state
            .script
            .lock()
            .expect("lock")
            .extend(script.iter().copied());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = Router::new()
            .route("/{hub}/messages", post(receive))
            .route(
                "/{hub}/partitions/{partition}/messages",
                post(receive_partition),
            )
            .route("/{hub}", get(describe))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeHub {
            port,
            state,
            _runtime: runtime,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }
}

/// The hub's Atom description, as `GET https://<ns>/<hub>` answers (trimmed to what is read).
async fn describe(State(state): State<Arc<HubState>>, Path(hub): Path<String>) -> String {
    let ids: String = (0..state.partition_count)
        .map(|i| format!("<d3p1:string>{i}</d3p1:string>"))
        .collect();
    format!(
        "<entry xmlns=\"http://www.w3.org/2005/Atom\"><title type=\"text\">{hub}</title><content type=\"application/xml\"><EventHubDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"><MessageRetentionInDays>1</MessageRetentionInDays><Status>Active</Status><PartitionCount>{}</PartitionCount><PartitionIds xmlns:d3p1=\"http://schemas.microsoft.com/2003/10/Serialization/Arrays\">{ids}</PartitionIds></EventHubDescription></content></entry>",
        state.partition_count
    )
}

async fn receive_partition(
    State(state): State<Arc<HubState>>,
    Path((hub, partition)): Path<(String, u32)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    record(state, hub, Some(partition), query, headers, body).into_response()
}

async fn receive(
    State(state): State<Arc<HubState>>,
    Path(hub): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    record(state, hub, None, query, headers, body).into_response()
}

fn record(
    state: Arc<HubState>,
    hub: String,
    partition: Option<u32>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let refused_bearer = header("authorization")
        .strip_prefix("Bearer ")
        .is_some_and(|token| {
            !state
                .identity
                .as_ref()
                .is_some_and(|identity| identity.accepts(token, EVENT_HUBS_RESOURCE))
        });
    let status = if refused_bearer {
        401
    } else {
        state
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(201)
    };
    state.received.lock().expect("lock").push(Received {
        hub,
        partition,
        query: query.unwrap_or_default(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: body.to_vec(),
        answered: status,
    });
    let mut reply = HeaderMap::new();
    if status == 429 {
        reply.insert("retry-after", "0".parse().expect("header"));
    }
    (
        StatusCode::from_u16(status).expect("status"),
        reply,
        "<Error><Code>test</Code></Error>",
    )
}

/// Checks that every event the hub took (201) went to partition CRC-32(order_id) mod
/// `partitions` of its hub by id, without a partition key, so each order sits at one partition
/// index on both hubs; that many orders reached both hubs and every partition got orders.
/// Returns the event bodies taken.
pub fn co_partitioned(received: &[Received], partitions: u32) -> Vec<String> {
    let mut partition_of_order: HashMap<String, (u32, Vec<String>)> = HashMap::new();
    let mut bodies = Vec::new();
    for r in received.iter().filter(|r| r.answered == 201) {
        let partition = r.partition.expect("sent to a partition by id");
        let batch: Value = serde_json::from_slice(&r.body).expect("JSON");
        for entry in batch.as_array().expect("array") {
            assert!(
                entry.get("BrokerProperties").is_none(),
                "no partition key: {entry}"
            );
            let text = entry["Body"].as_str().expect("Body");
            let event: Value = serde_json::from_str(text).expect("an event");
            let order = event["order_id"].as_str().expect("order_id").to_string();
            assert_eq!(
                partition,
                boxoffice_ingest::partitioning::partition_index(&order, partitions),
                "{order}"
            );
            let is_payment = event.get("payment_id").is_some();
            assert_eq!(r.hub == "payments", is_payment, "{event}");
            let seen = partition_of_order
                .entry(order)
                .or_insert((partition, Vec::new()));
            assert_eq!(
                seen.0, partition,
                "one order, one partition index on both hubs"
            );
            seen.1.push(r.hub.clone());
            bodies.push(text.to_string());
        }
    }
    let both = partition_of_order
        .values()
        .filter(|(_, hubs)| {
            hubs.iter().any(|h| h == "bookings") && hubs.iter().any(|h| h == "payments")
        })
        .count();
    assert!(both > 10, "orders with a booking and a payment: {both}");
    let used: std::collections::BTreeSet<u32> =
        partition_of_order.values().map(|(p, _)| *p).collect();
    assert_eq!(
        used.len(),
        partitions as usize,
        "every partition gets orders"
    );
    bodies
}
