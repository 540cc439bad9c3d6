use super::*;

fn holder(command: &str) -> Holder {
    Holder::this_process(command)
}

async fn one_holder_at_a_time(lake: &Lake) {
    let ttl = Duration::from_secs(30);
    let up = holder("boxoffice up");
    let lease = Lease::acquire(lake, "bookings_fact", &up, ttl)
        .await
        .expect("a free lease is taken");
    assert_eq!(lease.claim().generation, 1);

    let job = holder("boxoffice job run bookings_fact");
    let err = Lease::acquire(lake, "bookings_fact", &job, ttl)
        .await
        .expect_err("held by up");
    let text = err.to_string();
    assert!(text.contains("`boxoffice up`"), "{text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    match err {
        LeaseError::Held { claim, .. } => assert_eq!(claim.holder, up),
        other => panic!("expected Held, got {other:?}"),
    }
    // Another lease's name is independent.
    Lease::acquire(lake, "gold", &job, ttl)
        .await
        .expect("another lease")
        .release()
        .await
        .expect("release");

    let mut lease = lease;
    lease.renew().await.expect("renew");
    assert_eq!(lease.claim().generation, 2);
    lease.release().await.expect("release");
    let current = Lease::current(lake, "bookings_fact")
        .await
        .expect("read")
        .expect("a claim");
    assert!(current.released && current.generation == 3);

    let taken = Lease::acquire(lake, "bookings_fact", &job, ttl)
        .await
        .expect("released: free again");
    assert_eq!(taken.claim().generation, 4);
    assert_eq!(taken.claim().holder, job);
}

#[tokio::test]
async fn one_holder_at_a_time_on_a_local_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    one_holder_at_a_time(&lake).await;
    // Old claims are forgotten: the newest and the one before remain.
    let left = std::fs::read_dir(dir.path().join("_system/leases/bookings_fact"))
        .expect("folder")
        .count();
    assert_eq!(left, 2);
}

#[tokio::test]
async fn one_holder_at_a_time_on_azurite() {
    let azurite = boxoffice_testkit::Azurite::start();
    let lake = Lake::azurite("az://lake/leases", &azurite.endpoint()).expect("lake");
    lake.prepare().await.expect("containers");
    one_holder_at_a_time(&lake).await;
}

#[tokio::test]
async fn an_expired_claim_is_taken_over_and_its_holder_learns_it_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let ttl = Duration::from_millis(300);
    let mut first = Lease::acquire(&lake, "gold", &holder("first"), ttl)
        .await
        .expect("take");
    assert!(matches!(
        Lease::acquire(&lake, "gold", &holder("second"), ttl).await,
        Err(LeaseError::Held { .. })
    ));
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let second = Lease::acquire(&lake, "gold", &holder("second"), ttl)
        .await
        .expect("expired: taken over");
    let err = first.renew().await.expect_err("lost");
    assert!(
        matches!(&err, LeaseError::Lost { by: Some(c), .. } if c.holder == second.claim().holder),
        "{err:?}"
    );
    assert!(err.to_string().contains("`second`"), "{err}");
}

#[tokio::test]
async fn racing_claimants_get_one_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let lake = lake.clone();
        tasks.push(tokio::spawn(async move {
            Lease::acquire(&lake, "up", &holder(&format!("claimant {i}")), DEFAULT_TTL).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => won += 1,
            Err(LeaseError::Held { .. }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn a_kept_lease_stays_held_past_its_ttl_and_waiters_get_it_on_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let ttl = Duration::from_millis(600);
    let held = HeldLease::keep(
        Lease::acquire(&lake, "cdc", &holder("keeper"), ttl)
            .await
            .expect("take"),
    );
    tokio::time::sleep(ttl * 3).await;
    assert!(held.lost().is_none());
    assert!(matches!(
        Lease::acquire(&lake, "cdc", &holder("other"), ttl).await,
        Err(LeaseError::Held { .. })
    ));
    let waiter = {
        let lake = lake.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            let lease = Lease::acquire_waiting(
                &lake,
                "cdc",
                &holder("waiter"),
                ttl,
                Duration::from_millis(50),
                |_| seen += 1,
            )
            .await;
            (lease, seen)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.release().await.expect("release");
    let (lease, seen) = waiter.await.expect("waiter");
    assert!(seen > 0, "the waiter was told who held the lease");
    assert_eq!(lease.expect("taken").claim().holder.command, "waiter");
}

#[tokio::test]
async fn a_claim_of_a_process_gone_from_this_machine_is_taken_over_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = Holder {
        pid: child.id(),
        ..holder("killed")
    };
    child.wait().expect("reaped");
    assert!(dead.is_gone());
    Lease::acquire(&lake, "bookings_fact", &dead, Duration::from_secs(3600))
        .await
        .expect("take");
    let taken = Lease::acquire(&lake, "bookings_fact", &holder("next"), DEFAULT_TTL)
        .await
        .expect("its holder is gone: no need to wait an hour");
    assert_eq!(taken.claim().holder.command, "next");
    // A holder elsewhere (another machine) is never judged by this machine's processes.
    let elsewhere = Holder {
        machine: Some("another boot/pid:[1]".into()),
        pid: dead.pid,
        ..holder("remote")
    };
    assert!(!elsewhere.is_gone());
}

/// A store whose next `failures` writes fail in transit: each after it landed (`landed`) or
/// before, as a connection reset can do either way.
#[derive(Debug)]
struct LostAnswers {
    inner: object_store::memory::InMemory,
    failures: std::sync::atomic::AtomicUsize,
    landed: bool,
}

impl std::fmt::Display for LostAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LostAnswers")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for LostAnswers {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        use std::sync::atomic::Ordering;
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !fail {
            return self.inner.put_opts(location, payload, opts).await;
        }
        if self.landed {
            self.inner.put_opts(location, payload, opts).await?;
        }
        Err(object_store::Error::Generic {
            store: "test",
            source: "error sending request: connection reset".into(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn lossy(failures: usize, landed: bool) -> (std::sync::Arc<LostAnswers>, Files) {
    let store = std::sync::Arc::new(LostAnswers {
        inner: object_store::memory::InMemory::new(),
        failures: failures.into(),
        landed,
    });
    (store.clone(), Files::over(store))
}

fn claim_of(command: &str, generation: u64) -> Claim {
    let now = Utc::now();
    Claim {
        generation,
        holder: holder(command),
        acquired_at: now,
        renewed_at: now,
        expires_at: now + DEFAULT_TTL,
        released: false,
    }
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_in_transit_is_ours_when_it_landed() {
    let (_, files) = lossy(1, true);
    let mine = claim_of("up", 4);
    assert!(write_claim(&files, &mine).await.expect("retried"));
    let (_, files) = lossy(2, false);
    assert!(write_claim(&files, &mine).await.expect("retried twice"));
    assert_eq!(newest(&files).await.expect("read"), Some(mine));
}

#[tokio::test]
async fn a_retried_claim_that_finds_someone_elses_has_lost() {
    let (store, files) = lossy(0, false);
    let theirs = claim_of("job", 4);
    assert!(write_claim(&files, &theirs).await.expect("written"));
    store.failures.store(1, std::sync::atomic::Ordering::SeqCst);
    let mine = claim_of("up", 4);
    assert!(!write_claim(&files, &mine).await.expect("answered"));
    assert_eq!(newest(&files).await.expect("read"), Some(theirs));
}

#[tokio::test]
async fn a_claim_that_keeps_failing_in_transit_is_an_error_naming_the_file() {
    let (_, files) = lossy(usize::MAX, false);
    let err = write_claim(&files, &claim_of("up", 7))
        .await
        .expect_err("never lands");
    let text = err.to_string();
    assert!(text.contains("connection reset"), "{text}");
    assert!(text.contains(&claim_file(7)), "{text}");
}
