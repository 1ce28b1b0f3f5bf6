//! The start-up check that a topic exists, shared by the host and the sink.
//!
//! The broker runs with topic auto-creation off, and librdkafka waits for a
//! missing topic without failing: a consumer logs one warning and idles,
//! and a producer fails each record only after its message timeout. So each
//! binary checks its topics once at start and fails with the fix.

use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::client::Client;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Max wait for the broker's reply to the metadata request at start, the
/// value the host used before the check was shared.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails with a message naming `topic`, the broker at `bootstrap` and the
/// fix when the topic does not exist or has no partitions. `flag` is the
/// command-line flag that named the topic, such as `--topic`. Blocks the
/// calling thread until the broker replies or [`METADATA_TIMEOUT`] passes.
pub fn check_topic_exists<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    flag: &str,
    bootstrap: &str,
) -> anyhow::Result<()> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| {
            format!(
                "failed to fetch metadata of topic {topic:?} from {bootstrap} within {} s; \
                 check that the broker is running (`make broker-up` starts the local one) \
                 and that --bootstrap-servers names its client port",
                METADATA_TIMEOUT.as_secs()
            )
        })?;
    let described = metadata
        .topics()
        .iter()
        .find(|described| described.name() == topic);
    let error = described
        .and_then(|described| described.error())
        .map(RDKafkaErrorCode::from);
    match error {
        None if described.is_some_and(|described| !described.partitions().is_empty()) => Ok(()),
        // Such as an authorization failure: the topic may exist, so
        // "create it" would mislead.
        Some(code) if code != RDKafkaErrorCode::UnknownTopicOrPartition => {
            bail!("failed to use topic {topic:?} on {bootstrap}: the broker reports {code}")
        }
        _ => bail!(
            "topic {topic:?} does not exist on {bootstrap}; create it (`make broker-up` or \
             `scripts/kafka.sh topics` creates the weblog topics) or pass another {flag}"
        ),
    }
}
