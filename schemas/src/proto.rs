//! The wire protos (`headwater.v1`), generated once here by build.rs (protox, prost-build and,
//! with the `grpc` feature, tonic-prost-build), and their file descriptor set.

/// `headwater.v1`: `Event`, `Batch`, `PublishResponse`, `Rejection`; with the `grpc` feature also
/// the tonic `ingest_client::IngestClient` and `ingest_server::{Ingest, IngestServer}`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/headwater.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `proto/headwater/v1/*.proto`, services and source info
/// included (for gRPC reflection and dynamic decoding).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/headwater_v1_descriptor.bin"));

/// The text of `proto/headwater/v1/ingest.proto`.
pub const INGEST_PROTO: &str = include_str!("../proto/headwater/v1/ingest.proto");

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1::{Batch, Event};
    use super::*;

    #[test]
    fn batch_round_trips() {
        let batch = Batch {
            events: vec![Event {
                id: "e1".into(),
                r#type: "playback.start".into(),
                version: 1,
                payload: b"{}".to_vec().into(),
                attributes: [("k".to_owned(), "v".to_owned())].into(),
                ..Event::default()
            }],
        };
        let bytes = batch.encode_to_vec();
        assert_eq!(Batch::decode(bytes.as_slice()).unwrap(), batch);
    }

    #[test]
    fn descriptor_set_has_the_service() {
        let pool = prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap();
        let service = pool.get_service_by_name("headwater.v1.Ingest").unwrap();
        let publish = service.methods().next().unwrap();
        assert_eq!(publish.name(), "Publish");
        assert_eq!(publish.input().full_name(), "headwater.v1.Batch");
        assert!(pool.get_message_by_name("headwater.v1.Event").is_some());
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn grpc_feature_generates_the_ingest_service() {
        assert_eq!(v1::ingest_server::SERVICE_NAME, "headwater.v1.Ingest");
        let _new = v1::ingest_client::IngestClient::<tonic::transport::Channel>::new;
    }
}
