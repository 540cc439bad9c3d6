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
