//! Topics for tools (`weir bench nexmark --source kafka`): create one, count its records.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use weir_runtime::{Result, RuntimeError};

use crate::kafka::source::CONNECT_TIMEOUT;

fn error(servers: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Source(format!("kafka ({servers}): {e}"))
}

fn config(servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", servers);
    c
}

/// The number of records in `topic` (the sum over its partitions of their offset ranges), or
/// `None` when there is no such topic.
pub fn topic_records(servers: &str, topic: &str) -> Result<Option<u64>> {
    let consumer: BaseConsumer = config(servers).create().map_err(|e| error(servers, e))?;
    let metadata = consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT).map_err(|e| error(servers, e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        return Ok(None);
    };
    if t.partitions().is_empty() {
        return Ok(None);
    }
    let mut records = 0;
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), CONNECT_TIMEOUT).map_err(|e| error(servers, e))?;
        records += (high - low).max(0) as u64;
    }
    Ok(Some(records))
}

/// Create `topic` with `partitions` partitions (replication 1), deleting it first if it
/// exists.
pub fn recreate_topic(servers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(servers).create().map_err(|e| error(servers, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error(servers, format!("cannot start a runtime: {e}")))?;
    let options = AdminOptions::new().operation_timeout(Some(CONNECT_TIMEOUT));
    runtime.block_on(async {
        // a missing topic is fine here
        let _ = admin.delete_topics(&[topic], &options).await;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT * 3;
        loop {
            let results = admin.create_topics([&new], &options).await.map_err(|e| error(servers, e))?;
            match results.into_iter().next() {
                Some(Ok(_)) | None => return Ok(()),
                // the deletion is still under way
                Some(Err((_, code))) if std::time::Instant::now() < deadline => {
                    tracing::debug!(topic, ?code, "creating the topic again");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Some(Err((_, code))) => return Err(error(servers, format!("creating topic '{topic}': {code:?}"))),
            }
        }
    })
}
