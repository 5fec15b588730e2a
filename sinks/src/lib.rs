//! Headwater's sinks: the `Sink` trait and its S3, Elasticsearch/OpenSearch and topic implementations.
//!
//! Nothing here yet: the sinks arrive with the router + sinks issue.
