//! The records of the partitions a source reads, taken from the Kafka client many at a time.
//!
//! The `rdkafka` crate's safe API hands records over one by one, each through the client's
//! event queue (a lock, three clock readings and an event per record); reading a topic, that
//! was a fifth of the CPU. Here the partitions' fetch queues are forwarded to one queue of the
//! source's own, which `rd_kafka_consume_batch_queue` empties into an array in one call. The
//! consumer's own queue keeps everything else (commit replies, logs, client errors), and the
//! source still polls it.
//!
//! This is the one place weir calls librdkafka directly; every pointer is checked and every
//! message taken is destroyed exactly once.

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

/// A queue the source's partitions deliver their records to.
pub(crate) struct FetchQueue {
    client: *mut rd::rd_kafka_t,
    queue: *mut rd::rd_kafka_queue_t,
    /// The messages of the last read (destroyed before the next one, and on drop).
    taken: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: librdkafka's queues and messages may be used from any thread; the queue is only
// used through `&mut self` (or `&self` for reading the messages it owns).
unsafe impl Send for FetchQueue {}

/// How many records one read takes at most.
const READ_AT_MOST: usize = 4096;

impl FetchQueue {
    /// A queue for `consumer`'s partitions. It must be dropped before the consumer: the source
    /// keeps both in [`super::source::KafkaSource`], the queue first.
    pub(crate) fn new(consumer: &BaseConsumer) -> Option<Self> {
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is the consumer's live handle
        let queue = unsafe { rd::rd_kafka_queue_new(client) };
        (!queue.is_null()).then(|| Self { client, queue, taken: Vec::with_capacity(READ_AT_MOST) })
    }

    /// Deliver `partition`'s records here (call before it is assigned); `false` when the
    /// client does not know the partition.
    pub(crate) fn route(&mut self, topic: &str, partition: i32) -> bool {
        let Ok(name) = CString::new(topic) else { return false };
        // SAFETY: a live client and a NUL-terminated name; the partition's queue handle is
        // released right after forwarding (the forwarding stays with the partition)
        unsafe {
            let part = rd::rd_kafka_queue_get_partition(self.client, name.as_ptr(), partition);
            if part.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(part, self.queue);
            rd::rd_kafka_queue_destroy(part);
        }
        true
    }

    /// Wait up to `timeout` for records and take what has arrived, `at_most` of them (and no
    /// more than a few thousand).
    pub(crate) fn read(&mut self, timeout: Duration, at_most: usize) -> Fetched<'_> {
        self.release();
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let size = at_most.clamp(1, READ_AT_MOST);
        self.taken.resize(size, std::ptr::null_mut());
        // SAFETY: the array has room for `size` messages, and librdkafka fills the first `n`
        // of them, each ours to destroy
        let n = unsafe { rd::rd_kafka_consume_batch_queue(self.queue, millis, self.taken.as_mut_ptr(), size) };
        self.taken.truncate(usize::try_from(n).unwrap_or(0));
        Fetched { messages: &self.taken, _queue: PhantomData }
    }

    /// Destroy the messages of the last read.
    fn release(&mut self) {
        for m in self.taken.drain(..) {
            if !m.is_null() {
                // SAFETY: a message librdkafka gave us, destroyed once (drained)
                unsafe { rd::rd_kafka_message_destroy(m) };
            }
        }
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        self.release();
        // SAFETY: the queue was created by `new`, and the client is still alive (the source
        // drops the queue first)
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}

/// The records of one read, valid until the next.
pub(crate) struct Fetched<'q> {
    messages: &'q [*mut rd::rd_kafka_message_t],
    _queue: PhantomData<&'q FetchQueue>,
}

impl<'q> Fetched<'q> {
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The `i`th record, or the error the client reported in its place.
    pub(crate) fn get(&self, i: usize) -> Option<Fetch<'q>> {
        let m = *self.messages.get(i)?;
        if m.is_null() {
            return None;
        }
        // SAFETY: a message of this read, alive until the queue's next read (`'q`)
        let message: &'q rd::rd_kafka_message_t = unsafe { &*m };
        if message.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Some(Fetch::Error {
                partition: message.partition,
                offset: message.offset,
                code: RDKafkaErrorCode::from(message.err),
            });
        }
        let bytes = |ptr: *mut c_void, len: usize| -> Option<&'q [u8]> {
            // SAFETY: librdkafka's pointer and length of the message's key or payload
            (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
        };
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message
        let timestamp = unsafe { rd::rd_kafka_message_timestamp(m, &mut kind) };
        Some(Fetch::Record(Raw {
            message: m,
            partition: message.partition,
            offset: message.offset,
            timestamp: (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && timestamp >= 0)
                .then_some(timestamp),
            key: bytes(message.key, message.key_len),
            value: bytes(message.payload, message.len),
            _read: PhantomData,
        }))
    }
}

/// What a read found in one place.
pub(crate) enum Fetch<'q> {
    Record(Raw<'q>),
    /// The client's error for a partition: the end of one, with `enable.partition.eof`, and
    /// the offset there (after any transaction markers).
    Error {
        partition: i32,
        offset: i64,
        code: RDKafkaErrorCode,
    },
}

/// A record as the client holds it.
pub(crate) struct Raw<'q> {
    message: *mut rd::rd_kafka_message_t,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub key: Option<&'q [u8]>,
    /// `None`: a tombstone.
    pub value: Option<&'q [u8]>,
    _read: PhantomData<&'q FetchQueue>,
}

impl<'q> Raw<'q> {
    /// The record's headers, in order (a header may have no value).
    pub(crate) fn headers(&self) -> Vec<(&'q str, Option<&'q [u8]>)> {
        let mut out = Vec::new();
        let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: a live message; the headers belong to it
        if unsafe { rd::rd_kafka_message_headers(self.message, &mut headers) }
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || headers.is_null()
        {
            return out;
        }
        for i in 0.. {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: index `i` of the message's headers; name and value stay valid with it
            let found = unsafe { rd::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size) };
            if found != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: a NUL-terminated name, and `size` bytes of value (or none)
            let (name, value) = unsafe {
                let name = std::ffi::CStr::from_ptr(name);
                (
                    name.to_str().unwrap_or(""),
                    (!value.is_null()).then(|| std::slice::from_raw_parts(value as *const u8, size)),
                )
            };
            out.push((name, value));
        }
        out
    }
}
