use super::older::{text_uid_schema, with_bodies_schema};
use super::*;
use crate::silver::bookings_fact::input::{PartitionId, Progress};
use crate::silver::bookings_fact::join::JoinOutput;
use crate::silver::bookings_fact::join::tests::{kept, summary, without_bodies};
use deltalake::arrow::array::{
    Array, BooleanArray, Int32Array, Int64Array, StringArray, UInt8Array,
};

fn events(n: usize) -> Vec<JoinEvent> {
    crate::silver::bookings_fact::join::tests::generated(77, n)
}

/// The Bronze rows of `events`, as the join's input would read them back.
fn bronze(events: &[JoinEvent]) -> KeptBodies {
    events
        .iter()
        .map(|e| {
            let k = e.arrival();
            ((k.hub, k.partition, k.sequence), e.clone())
        })
        .collect()
}

/// The state after the first half of 20,000 generated events, and the second half.
fn half_way() -> (JoinState, Vec<JoinEvent>, Vec<JoinEvent>) {
    let all = events(20_000);
    let (first, rest) = all.split_at(all.len() / 2);
    let mut state = JoinState::new(JoinConfig::default());
    let mut ignored = JoinOutput::default();
    for e in first {
        state.process(e.clone(), &mut ignored);
    }
    state.evict(&mut ignored);
    (state, first.to_vec(), rest.to_vec())
}

#[test]
fn a_restored_state_continues_exactly_like_the_original() {
    let (mut original, first, rest) = half_way();
    let positions: Positions = [(
        PartitionId {
            hub: BOOKINGS,
            partition: 1,
        },
        Progress {
            done: 41,
            arrival: 7,
        },
    )]
    .into();
    let bytes = encode(3, &positions, &original).expect("encode");
    let stored = decode(bytes).expect("decode");
    let (bookings, payments) = original.pending();
    assert!(bookings > 100 && payments > 10, "{bookings} {payments}");
    assert_eq!(stored.places.len(), bookings + payments);
    let restored = stored.restore(bronze(&first)).expect("restore");
    assert_eq!(restored.batch, 3);
    assert_eq!(restored.positions, positions);
    // Restored events hold no raw body (the original's share theirs with the test's events).
    assert_eq!(kept(&restored.state), without_bodies(kept(&original)));
    assert_eq!(restored.state.marks(), original.marks());
    assert_eq!(restored.state.seen, original.seen);

    let mut continued = restored.state;
    let (mut a, mut b) = (JoinOutput::default(), JoinOutput::default());
    for e in &rest {
        original.process(e.clone(), &mut a);
        continued.process(e.clone(), &mut b);
    }
    original.drain(&mut a);
    continued.drain(&mut b);
    assert!(!a.matches.is_empty() && !a.unpaid.is_empty());
    assert_eq!(summary(&a), summary(&b));
}

#[test]
fn a_checkpoint_stores_kept_events_by_place_not_body() {
    let (state, ..) = half_way();
    let places = encode(1, &Positions::new(), &state).expect("encode");
    let bodies = with_bodies(1, &Positions::new(), &state);
    // The bodies were most of the file: without them it is less than half as large.
    assert!(
        places.len() * 2 < bodies.len(),
        "{} bytes by place, {} with bodies",
        places.len(),
        bodies.len()
    );
    let stored = decode(places).expect("decode");
    assert!(stored.bookings.is_empty() && stored.payments.is_empty());
}

#[test]
fn a_kept_event_gone_from_bronze_is_named() {
    let (state, first, _) = half_way();
    let stored = decode(encode(1, &Positions::new(), &state).expect("encode")).expect("decode");
    let gone = stored.places[0].key;
    let mut rows = bronze(&first);
    rows.remove(&(gone.hub, gone.partition, gone.sequence));
    let Err(e) = stored.restore(rows) else {
        panic!("restored without a kept event's body");
    };
    let table = if gone.hub == BOOKINGS {
        "bronze.bookings_raw"
    } else {
        "bronze.payments_raw"
    };
    let place = format!(
        "partition {} sequence {} of {table}",
        gone.partition, gone.sequence
    );
    assert!(e.contains(&place), "{e}");
}

/// A row of the layout with bodies: kind, uid text, uid halves, arrival key.
type OldRow = (u8, Option<String>, Option<(i64, i64)>, Option<ArrivalKey>);

/// The state after `batch` in the layout with bodies, as earlier versions wrote it.
fn with_bodies(batch: u64, positions: &Positions, state: &JoinState) -> Bytes {
    let mut rows: Vec<OldRow> = Vec::new();
    let mut bodies = Vec::new();
    let mut flags = Vec::new();
    for b in state.bookings.values().flatten() {
        rows.push((
            KIND_BOOKING,
            Some(b.item.uid.text().to_string()),
            None,
            Some(b.item.arrival),
        ));
        bodies.push(Some(boxoffice_events::canonical::booking_json(
            &b.item.booking,
        )));
        flags.push((Some(b.matched), Some(b.paid), None));
    }
    for p in state.payments.values().flatten() {
        rows.push((
            KIND_PAYMENT,
            Some(p.item.uid.text().to_string()),
            None,
            Some(p.item.arrival),
        ));
        bodies.push(Some(boxoffice_events::canonical::payment_json(
            &p.item.payment,
        )));
        flags.push((Some(p.matched), Some(false), None));
    }
    for (uid, time) in &state.seen {
        rows.push((KIND_UID, None, Some(split(*uid)), None));
        bodies.push(None);
        flags.push((None, None, Some(*time)));
    }
    let key = |f: fn(&ArrivalKey) -> i64| -> Int64Array {
        rows.iter().map(|r| r.3.as_ref().map(f)).collect()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<UInt8Array>()),
        Arc::new(rows.iter().map(|r| r.1.clone()).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| r.2.map(|h| h.0))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.2.map(|h| h.1))
                .collect::<Int64Array>(),
        ),
        Arc::new(key(|k| k.at)),
        Arc::new(
            rows.iter()
                .map(|r| r.3.map(|k| k.hub))
                .collect::<UInt8Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.3.map(|k| k.partition))
                .collect::<Int32Array>(),
        ),
        Arc::new(key(|k| k.sequence)),
        Arc::new(bodies.into_iter().collect::<StringArray>()),
        Arc::new(flags.iter().map(|f| f.0).collect::<BooleanArray>()),
        Arc::new(flags.iter().map(|f| f.2).collect::<Int64Array>()),
        Arc::new(flags.iter().map(|f| f.1).collect::<BooleanArray>()),
    ];
    let rows = RecordBatch::try_new(with_bodies_schema(), columns).expect("rows");
    let header = Header {
        batch,
        positions: positions.iter().map(|(k, v)| (*k, *v)).collect(),
        marks: state.marks(),
        config: *state.config(),
    };
    write(&header, &rows, WriterProperties::default()).expect("write")
}

/// The same checkpoint in the layout written before remembered uids were stored as keys:
/// each uid spelled as text in the `uid` column, no `uid_high` and `uid_low` columns.
fn in_text_uid_layout(bytes: Bytes) -> Bytes {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("reader");
    let header = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == META_KEY).cloned())
        .expect("header");
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, text_uid_schema(), None).expect("writer");
    for batch in builder.build().expect("batches") {
        let batch = batch.expect("batch");
        let uid = batch.column(1).as_string::<i32>();
        let high = batch.column(2).as_primitive::<Int64Type>();
        let low = batch.column(3).as_primitive::<Int64Type>();
        let spelled: StringArray = (0..batch.num_rows())
            .map(|i| {
                if uid.is_null(i) {
                    let key = join_halves(high.value(i), low.value(i));
                    Some(crate::silver::bookings_fact::join::EventUid::Uuid(key).to_string())
                } else {
                    Some(uid.value(i).to_string())
                }
            })
            .collect();
        let mut columns = batch.columns().to_vec();
        columns[1] = Arc::new(spelled);
        columns.drain(2..4);
        let old = RecordBatch::try_new(text_uid_schema(), columns).expect("old layout");
        writer.write(&old).expect("write");
    }
    writer.append_key_value_metadata(header);
    writer.close().expect("close");
    Bytes::from(out)
}

#[test]
fn checkpoints_of_earlier_versions_still_load() {
    let mut state = JoinState::new(JoinConfig::default());
    let mut ignored = JoinOutput::default();
    for e in events(4_000) {
        state.process(e, &mut ignored);
    }
    assert!(state.seen.len() > 1_000);
    let bodies = with_bodies(5, &Positions::new(), &state);
    for (layout, bytes) in [
        ("with bodies", bodies.clone()),
        ("uids as text", in_text_uid_layout(bodies)),
    ] {
        let stored = decode(bytes).expect(layout);
        assert!(stored.places.is_empty(), "{layout}");
        let restored = stored.restore(KeptBodies::default()).expect(layout);
        assert_eq!(restored.batch, 5, "{layout}");
        assert_eq!(restored.state.seen, state.seen, "{layout}");
        assert_eq!(
            kept(&restored.state),
            without_bodies(kept(&state)),
            "{layout}"
        );
    }
}
