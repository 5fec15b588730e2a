//! The simulated fleet: devices, the event mix over the example schemas, sizes, invalid events
//! and the run-prefixed event ids verification matches on.

use std::fmt::Write as _;

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::error::LoadtestError;

/// The default mix: what a streaming-service client fleet sends, by weight.
pub const DEFAULT_MIX: &[(&str, u32)] = &[
    ("ui.impression", 40),
    ("playback.start", 10),
    ("playback.pause", 8),
    ("playback.seek", 6),
    ("playback.stop", 10),
    ("search.query", 12),
    ("client.error", 4),
    ("otel.log", 10),
    ("device.telemetry", 10),
];

/// Event types this generator can build valid payloads for: the example schemas, JSON Schema
/// ones and `device.telemetry` (protobuf, sent in its proto3 JSON form, which the gateway
/// validates against the message descriptor; it goes to the `telemetry` topic).
pub const KNOWN_TYPES: &[&str] = &[
    "ui.impression",
    "playback.start",
    "playback.pause",
    "playback.seek",
    "playback.stop",
    "search.query",
    "client.error",
    "otel.log",
    "device.telemetry",
];

/// The protobuf example type: no unknown fields allowed, so it pads inside a string field.
const TELEMETRY: &str = "device.telemetry";

/// What the fleet looks like; built once from the options.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Prefix of every event id.
    pub run_id: String,
    /// Number of devices.
    pub devices: u32,
    /// Events per batch.
    pub batch_size: u32,
    /// Target JSON size of one event.
    pub event_bytes: usize,
    /// Share of invalid events, 0 to 1.
    pub invalid_share: f64,
    /// Type mix with weights.
    pub mix: Vec<(&'static str, u32)>,
    /// Seed of contents and device order.
    pub seed: u64,
}

/// A [`FleetSpec`] as text (the mix as `type=weight,...`), for reports and saved ledgers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpecText {
    /// Prefix of every event id.
    pub run_id: String,
    /// Number of devices.
    pub devices: u32,
    /// Events per batch.
    pub batch_size: u32,
    /// Target JSON size of one event.
    pub event_bytes: usize,
    /// Share of invalid events, 0 to 1.
    pub invalid_share: f64,
    /// Type mix, `type=weight,...`.
    pub mix: String,
    /// Seed of contents and device order.
    pub seed: u64,
}

impl From<&FleetSpec> for SpecText {
    fn from(spec: &FleetSpec) -> SpecText {
        let mix: Vec<String> = spec.mix.iter().map(|(t, w)| format!("{t}={w}")).collect();
        SpecText {
            run_id: spec.run_id.clone(),
            devices: spec.devices,
            batch_size: spec.batch_size,
            event_bytes: spec.event_bytes,
            invalid_share: spec.invalid_share,
            mix: mix.join(","),
            seed: spec.seed,
        }
    }
}

impl SpecText {
    /// The spec back (the mix parsed again).
    pub fn to_spec(&self) -> Result<FleetSpec, LoadtestError> {
        Ok(FleetSpec {
            run_id: self.run_id.clone(),
            devices: self.devices,
            batch_size: self.batch_size,
            event_bytes: self.event_bytes,
            invalid_share: self.invalid_share,
            mix: parse_mix(&self.mix)?,
            seed: self.seed,
        })
    }
}

/// One generated event.
#[derive(Debug, Clone, PartialEq)]
pub struct GenEvent {
    /// `{run}-{seq}`.
    pub id: String,
    /// Event type.
    pub event_type: &'static str,
    /// Device id.
    pub source: String,
    /// Client time in ms.
    pub ts: i64,
    /// The payload as JSON text.
    pub payload: String,
}

/// A generator for a fleet: deterministic in (seed, seq).
#[derive(Debug, Clone)]
pub struct Fleet {
    spec: FleetSpec,
    total_weight: u64,
    invalid_below: u64,
    order: Vec<u32>,
}

/// Parses `type=weight,...` against [`KNOWN_TYPES`].
pub fn parse_mix(text: &str) -> Result<Vec<(&'static str, u32)>, LoadtestError> {
    let mut mix = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let known = KNOWN_TYPES
            .iter()
            .find(|k| **k == name.trim())
            .ok_or_else(|| {
                LoadtestError::Config(format!(
                    "--mix: unknown type {name:?} (known: {})",
                    KNOWN_TYPES.join(", ")
                ))
            })?;
        let weight = weight
            .trim()
            .parse()
            .map_err(|_| LoadtestError::Config(format!("--mix: bad weight {weight:?}")))?;
        mix.push((*known, weight));
    }
    if mix.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
        return Err(LoadtestError::Config("--mix: weights sum to 0".into()));
    }
    Ok(mix)
}

/// A 64-bit mix of a seed and a counter (splitmix64).
pub fn hash(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The id of event number `seq` of run `run`.
pub fn event_id(run: &str, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// The sequence number of an id of run `run`, or None for another run's (or anyone's) id.
pub fn parse_id(run: &str, id: &str) -> Option<u64> {
    id.strip_prefix(run)?.strip_prefix('-')?.parse().ok()
}

impl Fleet {
    /// A fleet from its spec; fails on an empty fleet or a bad share.
    pub fn new(spec: FleetSpec) -> Result<Fleet, LoadtestError> {
        if spec.devices == 0 || spec.batch_size == 0 {
            return Err(LoadtestError::Config(
                "--devices and --batch-size must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&spec.invalid_share) {
            return Err(LoadtestError::Config(
                "--invalid-share must be within 0..=1".into(),
            ));
        }
        let total_weight = spec.mix.iter().map(|(_, w)| u64::from(*w)).sum();
        // Exact at 0 and 1; otherwise the share of the u64 range below the threshold.
        let invalid_below = if spec.invalid_share >= 1.0 {
            u64::MAX
        } else {
            (spec.invalid_share * u64::MAX as f64) as u64
        };
        let mut order: Vec<u32> = (0..spec.devices).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(spec.seed));
        Ok(Fleet {
            spec,
            total_weight,
            invalid_below,
            order,
        })
    }

    /// The spec this fleet was built from.
    pub fn spec(&self) -> &FleetSpec {
        &self.spec
    }

    /// Whether event `seq` is generated invalid (deterministic, so verification needs no list).
    pub fn is_invalid(&self, seq: u64) -> bool {
        self.invalid_below > 0 && hash(self.spec.seed ^ 0x1D, seq) <= self.invalid_below
    }

    /// The device that sends batch number `batch`: devices take turns in a fixed random order.
    pub fn device_of(&self, batch: u64) -> u32 {
        self.order[(batch % u64::from(self.spec.devices)) as usize]
    }

    /// The `batch_size` events of batch `batch`, numbered from `batch × batch_size`.
    pub fn batch(&self, batch: u64, ts: i64) -> Vec<GenEvent> {
        let size = u64::from(self.spec.batch_size);
        let source = format!("dev-{:05}", self.device_of(batch));
        (batch * size..(batch + 1) * size)
            .map(|seq| self.event(seq, &source, ts))
            .collect()
    }

    /// Event number `seq` from `source`.
    pub fn event(&self, seq: u64, source: &str, ts: i64) -> GenEvent {
        let h = hash(self.spec.seed, seq);
        let event_type = self.kind(h);
        let id = event_id(&self.spec.run_id, seq);
        let invalid = self.is_invalid(seq);
        let mut payload = if invalid && event_type == TELEMETRY {
            // proto3 has no required fields: a wrong type is what fails.
            String::from(r#"{"cpu_percent":"high""#)
        } else if invalid {
            // Every JSON example schema has required fields: an object with none of them fails.
            String::from("{")
        } else {
            let mut p = valid_payload(event_type, h);
            p.pop(); // reopen the object for padding
            p
        };
        let overhead = envelope_overhead(&id, event_type, source) + payload.len() + 1;
        let want = self.spec.event_bytes.saturating_sub(overhead);
        if event_type == TELEMETRY && !invalid {
            // Reopen the trailing `player_version` string and lengthen it.
            payload.pop();
            payload.extend(std::iter::repeat_n('a', want));
            payload.push('"');
        } else {
            pad(&mut payload, want);
        }
        payload.push('}');
        GenEvent {
            id,
            event_type,
            source: source.to_owned(),
            ts,
            payload,
        }
    }

    fn kind(&self, h: u64) -> &'static str {
        let mut pick = (h >> 11) % self.total_weight.max(1);
        for (name, weight) in &self.spec.mix {
            if pick < u64::from(*weight) {
                return name;
            }
            pick -= u64::from(*weight);
        }
        self.spec.mix[0].0
    }
}

/// JSON bytes of the envelope around a payload (`{"id":…,"payload":}`), for padding.
fn envelope_overhead(id: &str, event_type: &str, source: &str) -> usize {
    r#"{"id":"","type":"","version":1,"source":"","ts":1700000000000,"payload":}"#.len()
        + id.len()
        + event_type.len()
        + source.len()
}

/// Appends `"x_pad":"aaa…"` (with a leading comma when the object has members) so the payload
/// grows by about `want` bytes.
fn pad(payload: &mut String, want: usize) {
    let sep = usize::from(payload.len() > 1);
    let fixed = sep + r#""x_pad":"""#.len();
    if want <= fixed {
        return;
    }
    if sep == 1 {
        payload.push(',');
    }
    payload.push_str(r#""x_pad":""#);
    payload.extend(std::iter::repeat_n('a', want - fixed));
    payload.push('"');
}

/// A payload valid against the example schema of `event_type`, varied by `h`.
fn valid_payload(event_type: &str, h: u64) -> String {
    let title = h % 5000;
    let pos = (h >> 13) % 7_200_000;
    let small = (h >> 40) % 50;
    let mut s = String::with_capacity(160);
    let _ = match event_type {
        "playback.start" => write!(
            s,
            r#"{{"title_id":"title-{title}","position_ms":{pos},"profile_id":"p-{small}","session_id":"s-{h:x}"}}"#
        ),
        "playback.pause" => write!(
            s,
            r#"{{"title_id":"title-{title}","position_ms":{pos},"session_id":"s-{h:x}"}}"#
        ),
        "playback.seek" => write!(
            s,
            r#"{{"title_id":"title-{title}","from_position_ms":{pos},"to_position_ms":{},"method":"scrub"}}"#,
            pos + 30_000
        ),
        "playback.stop" => write!(
            s,
            r#"{{"title_id":"title-{title}","position_ms":{pos},"watched_ms":{pos},"reason":"user"}}"#
        ),
        "search.query" => write!(
            s,
            r#"{{"query":"q{title}","results":{small},"latency_ms":{},"input":"keyboard"}}"#,
            small * 7
        ),
        "client.error" => write!(
            s,
            r#"{{"code":"E{small}","severity":"error","message":"request failed","component":"player"}}"#
        ),
        // The fields that fit a 200-byte event (proto3 fields are all optional).
        TELEMETRY => write!(
            s,
            r#"{{"cpu_percent":{small}.5,"dropped_frames":{},"bitrate_kbps":{},"player_version":"7.12.0"}}"#,
            small % 7,
            title % 16_000
        ),
        "otel.log" => write!(
            s,
            r#"{{"severity_number":9,"body":"log line {title}","attributes":{{"k":"v"}},"resource":{{"service.name":"app"}}}}"#
        ),
        _ => write!(
            s,
            r#"{{"title_id":"title-{title}","page":"home","row":{small},"column":{},"visible_ms":{}}}"#,
            small % 10,
            pos % 5000
        ),
    };
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test fleet of run `run`: 10 devices, 200-byte events, the default mix.
    pub(crate) fn spec_of(run: &str, batch_size: u32, invalid_share: f64) -> FleetSpec {
        FleetSpec {
            run_id: run.into(),
            devices: 10,
            batch_size,
            event_bytes: 200,
            invalid_share,
            mix: DEFAULT_MIX.to_vec(),
            seed: 7,
        }
    }

    /// Run `r1`, batches of 100.
    pub(crate) fn spec(invalid_share: f64) -> FleetSpec {
        spec_of("r1", 100, invalid_share)
    }

    #[test]
    fn ids_round_trip_and_other_runs_do_not_match() {
        assert_eq!(parse_id("r1", &event_id("r1", 42)), Some(42));
        assert_eq!(parse_id("r1", "r10-42"), None);
        assert_eq!(parse_id("r1", "zz-1"), None);
    }

    #[test]
    fn payloads_are_json_and_near_the_target_size() {
        let fleet = Fleet::new(spec(0.1)).unwrap();
        for ev in fleet.batch(3, 1_700_000_000_000) {
            let v: serde_json::Value = serde_json::from_str(&ev.payload).unwrap();
            assert!(v.is_object());
            let size = envelope_overhead(&ev.id, ev.event_type, &ev.source) + ev.payload.len();
            assert!((190..=230).contains(&size), "{size} {}", ev.payload);
        }
    }

    #[test]
    fn payloads_validate_against_the_example_schemas() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/events");
        let sources = std::fs::read_dir(dir).unwrap().map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            headwater_schemas::SourceFile { name, text }
        });
        let options = headwater_schemas::LoadOptions::default();
        let registry = headwater_schemas::Registry::from_sources(sources, &options).unwrap();
        let fleet = Fleet::new(spec(0.2)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for seq in 0..2_000 {
            let ev = fleet.event(seq, "dev-1", 1_700_000_000_000);
            let payload = headwater_schemas::Payload::Json(ev.payload.as_bytes());
            let verdict = registry.validate(ev.event_type, 1, payload);
            assert_eq!(
                verdict.is_ok(),
                !fleet.is_invalid(seq),
                "{} {}",
                ev.event_type,
                ev.payload
            );
            seen.insert(ev.event_type);
        }
        assert_eq!(
            seen.len(),
            KNOWN_TYPES.len(),
            "every type of the mix generated: {seen:?}"
        );
    }

    #[test]
    fn invalid_share_is_respected_and_deterministic() {
        let fleet = Fleet::new(spec(0.1)).unwrap();
        let n = (0..100_000).filter(|s| fleet.is_invalid(*s)).count();
        assert!((9_000..11_000).contains(&n), "{n}");
        assert!(!Fleet::new(spec(0.0)).unwrap().is_invalid(5));
        assert!((0..100).all(|s| Fleet::new(spec(1.0)).unwrap().is_invalid(s)));
    }

    #[test]
    fn devices_take_turns() {
        let fleet = Fleet::new(spec(0.0)).unwrap();
        let mut seen: Vec<u32> = (0..10).map(|b| fleet.device_of(b)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(fleet.device_of(3), fleet.device_of(13));
    }

    #[test]
    fn mix_parses_and_refuses_unknown_types() {
        assert_eq!(
            parse_mix("playback.start=3,search.query").unwrap(),
            vec![("playback.start", 3), ("search.query", 1)]
        );
        assert!(parse_mix("nope=1").is_err());
        assert!(parse_mix("search.query=0").is_err());
    }
}
