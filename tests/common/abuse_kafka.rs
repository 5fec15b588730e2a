//! The abuse run's classes on the Kafka port (tests/abuse.rs), spoken as a raw client: 100 MiB
//! frames declared and never sent from one address past its connection cap, whole 100 MiB
//! frames, a Fetch listing one partition 1,000 times and 50 MiB answers left unread, a
//! JoinGroup flood with 1000 KiB of metadata each, CreateTopics of 10,000 partitions and a
//! Metadata flood of new topic names, an OffsetCommit of a huge number of entries, and Produce
//! compression bombs. Each records the answers it got in the report.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::Target;
use crate::common::http_raw::try_connect_from;
use crate::common::kafka_wire::{
    ANSWER_WITHIN, COORDINATOR_NOT_AVAILABLE, CORRUPT_MESSAGE, CREATE_TOPICS, FETCH,
    INVALID_PARTITIONS, JOIN_GROUP, MESSAGE_TOO_LARGE, OFFSET_COMMIT, POLICY_VIOLATION,
    UNKNOWN_TOPIC_OR_PARTITION, Wire, create_topics_answer, create_topics_body, fetch_body,
    fetched, join_group_body, offset_commit_body, offset_commit_codes, value_batches,
};
use crate::common::record_batch::{GZIP, LZ4, ZSTD, small_batch, zeros_batch};

const MIB: usize = 1024 * 1024;
/// The per-address connection cap of the Kafka port (`log.kafka_max_connections_per_ip`).
const PER_IP_CAP: usize = 256;

/// Starts every class of the Kafka port, each in a task of its own.
pub(crate) fn spawn(target: &Arc<Target>) -> Vec<JoinHandle<()>> {
    let blocking: [fn(&Target); 6] = [
        whole_frames,
        fetch_flood,
        join_group_flood,
        topic_flood,
        offset_commit_flood,
        produce_bombs,
    ];
    let mut tasks: Vec<JoinHandle<()>> = blocking
        .into_iter()
        .map(|class| {
            let target = Arc::clone(target);
            tokio::task::spawn_blocking(move || class(&target))
        })
        .collect();
    tasks.push(tokio::spawn(declared_frames(Arc::clone(target))));
    tasks
}

/// Class 6 (Kafka): from 127.0.0.2, connections up to the per-address cap each declare a
/// 100 MiB frame and send 64 KiB of it; 4 more are closed at accept. While they are held, a
/// 64 KiB Produce from another address must be answered (a declared length takes none of the
/// request budget before its bytes arrive); then they are closed.
async fn declared_frames(target: Arc<Target>) {
    let from = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..target.profile.declared_frames.min(PER_IP_CAP) {
        let Ok(mut stream) = try_connect_from(from, target.kafka).await else {
            continue;
        };
        let declared = (100 * MIB as i32 - 1).to_be_bytes();
        let sent = stream.write_all(&declared).await.is_ok()
            && stream.write_all(&[0u8; 64 * 1024]).await.is_ok();
        if sent {
            held.push(stream);
        }
    }
    let mut closed = 0;
    for _ in 0..4 {
        let stream = try_connect_from(from, target.kafka).await.unwrap();
        let mut wire = Wire::from_std(stream.into_std().unwrap());
        closed += usize::from(wire.closed_without_answer());
    }
    let answer = format!(
        "{} connections each declaring 100 MiB and sending 64 KiB held; {closed} of 4 over \
         the cap of {PER_IP_CAP} closed without an answer",
        held.len()
    );
    let expected = held.len() == target.profile.declared_frames.min(PER_IP_CAP) && closed == 4;
    target.report.row(
        "6 Kafka declared 100 MiB frames, connection cap",
        answer,
        expected,
    );
    let kafka = target.kafka;
    let waited = tokio::task::spawn_blocking(move || {
        let mut wire = Wire::connect_within(kafka, STARVED_AFTER);
        let sent = Instant::now();
        let answer = wire.produce("abuse-starved", 0, &value_batches(1, 64 * 1024));
        (answer.map(|a| a.0), sent.elapsed())
    })
    .await
    .unwrap();
    // The declared lengths hold no budget until their bytes arrive, so the Produce is answered
    // (any code: the topic flood may have used up log.max_topics) rather than starved.
    let (answer, expected) = match waited {
        (Some(code), took) => (
            format!("error code {code} after {} ms", took.as_millis()),
            true,
        ),
        (None, took) => (
            format!(
                "no answer within {} s: the declared frames starve the request budget \
                 (log.kafka_queued_max_request_bytes)",
                took.as_secs()
            ),
            false,
        ),
    };
    target.report.row(
        "6 Kafka: a 64 KiB Produce while the declared frames are held",
        answer,
        expected,
    );
    drop(held);
}

/// How long the Produce beside the declared frames waits for its answer.
const STARVED_AFTER: Duration = Duration::from_secs(10);

/// Class 6 (Kafka): connections each sending a whole 100 MiB frame (an unknown API key) at
/// once: each is read within the request budget, then closed.
fn whole_frames(target: &Target) {
    let mut frame = Vec::with_capacity(100 * MIB + 4);
    frame.extend((100 * MIB as i32).to_be_bytes());
    frame.extend(0x7fffi16.to_be_bytes());
    frame.resize(100 * MIB + 4, 0);
    let closed: usize = std::thread::scope(|s| {
        let senders: Vec<_> = (0..target.profile.whole_frames)
            .map(|_| {
                s.spawn(|| {
                    let mut wire = Wire::connect(target.kafka);
                    // A write may fail once the server refused the frame and closed.
                    let _ = wire.stream.write_all(&frame);
                    usize::from(wire.closed_without_answer())
                })
            })
            .collect();
        senders.into_iter().map(|t| t.join().unwrap()).sum()
    });
    let count = target.profile.whole_frames;
    target.report.row(
        "6 Kafka whole 100 MiB frames at once",
        format!("{closed} of {count} closed without an answer"),
        closed == count,
    );
}

/// Class 5: over 50 MiB in one partition, a Fetch listing it 1,000 times with `max_bytes` -1,
/// then consumers that leave their 50 MiB answers unread until four are coming.
fn fetch_flood(target: &Target) {
    let topic = "abuse-fetched";
    let mut wire = Wire::connect(target.kafka);
    let records = value_batches(8, 512 * 1024);
    for _ in 0..target.profile.fetch_batches {
        let (error, _) = wire.produce(topic, 0, &records).expect("a Produce answer");
        assert_eq!(error, 0, "Produce to {topic}");
    }
    drop(records);
    let answer = wire.request(FETCH, 4, &fetch_body(topic, 1000));
    let (partitions, bytes) = answer.as_deref().map_or((0, 0), fetched);
    target.report.row(
        "5 Fetch: one partition listed 1,000 times, max_bytes -1",
        format!(
            "{partitions} partition answered, {} MiB of records",
            bytes / MIB
        ),
        partitions == 1 && bytes <= 50 * MIB,
    );

    let consumers = target.profile.unread_fetches;
    let coming = Arc::new((Mutex::new(0usize), Condvar::new()));
    let answers: Vec<(usize, usize)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..consumers)
            .map(|_| {
                let coming = Arc::clone(&coming);
                s.spawn(move || {
                    let mut wire = Wire::connect(target.kafka);
                    wire.send(FETCH, 4, &fetch_body(topic, 1)).expect("sent");
                    let mut first = [0u8; 1];
                    assert_eq!(wire.stream.peek(&mut first).unwrap(), 1, "an answer coming");
                    let (count, changed) = &*coming;
                    let mut count = count.lock().unwrap();
                    *count += 1;
                    changed.notify_all();
                    // Unread until four answers are coming (bounded: then read anyway).
                    let (count, _) = changed
                        .wait_timeout_while(count, ANSWER_WITHIN, |c| *c < consumers.min(4))
                        .unwrap();
                    drop(count);
                    fetched(&wire.answer().expect("a Fetch answer"))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let full = answers
        .iter()
        .filter(|a| a.0 == 1 && a.1 > 49 * MIB)
        .count();
    target.report.row(
        "5 Fetch: 50 MiB answers left unread",
        format!("{full} of {consumers} consumers got a whole 50 MiB answer"),
        full == consumers,
    );
}

/// Class 9: JoinGroups to new groups, each carrying 1000 KiB of metadata.
fn join_group_flood(target: &Target) {
    let mut wire = Wire::connect(target.kafka);
    let metadata = vec![7u8; 1000 * 1024];
    let mut codes: BTreeMap<i16, usize> = BTreeMap::new();
    for i in 0..target.profile.join_groups {
        let body = join_group_body(&format!("abuse-flood-{i}"), &metadata);
        let answer = wire
            .request(JOIN_GROUP, 0, &body)
            .expect("a JoinGroup answer");
        *codes
            .entry(i16::from_be_bytes([answer[0], answer[1]]))
            .or_default() += 1;
    }
    let expected = codes
        .keys()
        .all(|c| [0, COORDINATOR_NOT_AVAILABLE].contains(c));
    target.report.row(
        "9 JoinGroup flood, 1000 KiB metadata each",
        format!("error codes {codes:?} (15: coordinator not available, waits for room)"),
        expected,
    );
}

/// Class 7: CreateTopics of 10,000 partitions, then Metadata asking for new topic names (100
/// a request), auto-created up to `log.max_topics`.
fn topic_flood(target: &Target) {
    let mut wire = Wire::connect(target.kafka);
    let answer = wire.request(CREATE_TOPICS, 2, &create_topics_body("abuse-huge", 10_000));
    let (_, code, message) = create_topics_answer(&answer.expect("a CreateTopics answer"));
    target.report.row(
        "7 CreateTopics with 10,000 partitions",
        format!("error code {code} ({message})"),
        code == INVALID_PARTITIONS,
    );
    let names: Vec<String> = (0..target.profile.metadata_topics)
        .map(|n| format!("abuse-topic-{n}"))
        .collect();
    let mut codes: BTreeMap<i16, usize> = BTreeMap::new();
    for chunk in names.chunks(100) {
        let topics = wire.metadata(chunk).expect("a Metadata answer");
        for (_, code, _) in topics {
            *codes.entry(code).or_default() += 1;
        }
    }
    let fds =
        std::fs::read_dir(format!("/proc/{}/fd", target.report.pid())).map_or(0, Iterator::count);
    target.report.row(
        "7 Metadata auto-creating new topic names",
        format!("error codes {codes:?} (44: over log.max_topics); server holds {fds} fds after"),
        codes.keys().all(|c| [0, POLICY_VIOLATION].contains(c)),
    );
}

/// Class 8: one OffsetCommit of the 4 partitions of `events` and a huge number of partitions
/// of a topic that does not exist.
fn offset_commit_flood(target: &Target) {
    let entries = target.profile.offset_entries;
    let body = offset_commit_body(
        "abuse-offsets",
        &[("events", 4), ("abuse-no-such-topic", entries)],
    );
    let mut wire = Wire::connect(target.kafka);
    let sent = Instant::now();
    let answer = wire
        .request(OFFSET_COMMIT, 2, &body)
        .expect("an OffsetCommit answer");
    let took = sent.elapsed();
    let codes = offset_commit_codes(&answer);
    let mut counts: BTreeMap<i16, usize> = BTreeMap::new();
    for code in &codes {
        *counts.entry(*code).or_default() += 1;
    }
    let expected = codes.len() == 4 + entries as usize
        && codes[..4].iter().all(|c| *c == 0)
        && codes[4..].iter().all(|c| *c == UNKNOWN_TOPIC_OR_PARTITION);
    target.report.row(
        "8 OffsetCommit of 4 + many unknown partitions",
        format!(
            "{} entries answered in {} ms, error codes {counts:?} (3: unknown topic or partition)",
            codes.len(),
            took.as_millis()
        ),
        expected,
    );
}

/// Class 4: Produce of lz4, gzip and zstd batches of one record of zeros, inflating far past
/// the limit (8 × `max_message_bytes`); then normal compressed produces.
fn produce_bombs(target: &Target) {
    let profile = target.profile;
    let mut bombs = vec![
        ("lz4", LZ4, profile.lz4_bomb, CORRUPT_MESSAGE),
        ("gzip", GZIP, profile.deflate_bomb, CORRUPT_MESSAGE),
        ("zstd", ZSTD, profile.deflate_bomb, CORRUPT_MESSAGE),
    ];
    if profile.gib_bomb {
        // Over `max_message_bytes` as sent: refused before it is inflated.
        bombs.push(("lz4", LZ4, 1 << 30, MESSAGE_TOO_LARGE));
    }
    for (name, codec, inflated, wanted) in bombs {
        let bomb = zeros_batch(codec, inflated);
        // The same bomb from 4 connections at once.
        let answers: Vec<Option<(i16, i64)>> = std::thread::scope(|s| {
            let senders: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Wire::connect(target.kafka).produce("abuse-bombs", 0, &bomb)))
                .collect();
            senders.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let codes: Vec<i16> = answers.iter().map(|a| a.map_or(-100, |a| a.0)).collect();
        target.report.row(
            &format!("4 Produce {name} bomb of {} MiB x4 at once", inflated / MIB),
            format!(
                "{} KiB on the wire: error codes {codes:?} (2: corrupt message, 10: message \
                 too large, -100: no answer)",
                bomb.len() / 1024
            ),
            codes.iter().all(|c| *c == wanted),
        );
    }
    let mut wire = Wire::connect(target.kafka);
    let codes: Vec<i16> = [GZIP, LZ4, ZSTD]
        .into_iter()
        .map(|codec| {
            wire.produce("abuse-bombs", 0, &small_batch(codec, 10))
                .map_or(-100, |a| a.0)
        })
        .collect();
    target.report.row(
        "4 Produce normal gzip, lz4, zstd batches after the bombs",
        format!("error codes {codes:?}"),
        codes == [0, 0, 0],
    );
}
