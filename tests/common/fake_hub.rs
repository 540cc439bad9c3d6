//! A stand-in for the Event Hubs REST endpoints boxoffice uses: send (`POST /<hub>/messages`),
//! send to a partition (`POST /<hub>/partitions/<id>/messages`) and the hub's description
//! (`GET /<hub>`, with `<PartitionCount>`). It records each send and answers the statuses it is
//! scripted to, then 201. Event Hubs cannot run here, and its emulator has no REST API.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};

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
        let state = Arc::new(HubState {
            partition_count,
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
    let status = state
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(201);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
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
