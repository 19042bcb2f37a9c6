//! A real Apache Kafka broker for the tests: one node in KRaft mode on 127.0.0.1, on free
//! ports, from the jars `tests/kafka/pom.xml` names (fetched once with Maven into
//! `target/kafka/libs`, the Maven repository kept in `target/kafka/m2`).
//!
//! The broker runs under a shell that reads its standard input: when the test process ends,
//! however it ends, the pipe closes and the shell stops the broker.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A record's headers: names and values (`None`: a header without one).
pub type Headers<'a> = &'a [(&'a str, Option<&'a [u8]>)];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The broker's jars, fetched with Maven the first time (one process at a time).
pub fn jars() -> PathBuf {
    let dir = target().join("kafka");
    let libs = dir.join("libs");
    std::fs::create_dir_all(&dir).expect("target/kafka");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    lock.lock().expect("lock");
    if !libs.join(".complete").exists() {
        let status = Command::new("mvn")
            .args(["-q", "-B", "-f"])
            .arg(root().join("tests/kafka/pom.xml"))
            .arg(format!("-Dmaven.repo.local={}", dir.join("m2").display()))
            .arg("dependency:copy-dependencies")
            .arg(format!("-DoutputDirectory={}", libs.display()))
            .status()
            .expect("mvn runs (the Kafka tests need Java 17 and Maven)");
        assert!(status.success(), "mvn could not fetch the Kafka broker's jars");
        std::fs::write(libs.join(".complete"), b"").expect("mark");
    }
    libs
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port()
}

/// A broker, stopped when dropped.
pub struct Broker {
    /// `127.0.0.1:port`, for `properties.bootstrap.servers`.
    pub servers: String,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl Broker {
    /// The broker every test of this binary shares.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Broker::start)
    }

    /// A broker of one's own (to stop and start again).
    pub fn start() -> Broker {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().to_path_buf();
        let (port, controller) = (free_port(), free_port());
        let properties = format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\nnum.partitions=1\nauto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=1\n\
             group.initial.rebalance.delay.ms=0\nlog.flush.interval.messages=1000000\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), properties).expect("server.properties");
        let libs = jars();
        let status = Command::new("java")
            .arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .args(["kafka.tools.StorageTool", "format", "-t", "q1Sh-9_ISia_zwGINzRvyQ", "-c"])
            .arg(dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("java runs");
        assert!(status.success(), "formatting the broker's storage failed");
        let mut broker = Broker { servers: format!("127.0.0.1:{port}"), dir, _temp: Some(temp), child: None };
        broker.run();
        broker
    }

    /// Start the broker process and wait until it answers.
    fn run(&mut self) {
        let libs = jars();
        let script = format!(
            "java -Xms256m -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp '{}/*' kafka.Kafka '{}' >> '{}' 2>&1 &\n\
             pid=$!\nread _ignored\nkill $pid\nwait $pid\n",
            libs.display(),
            self.dir.join("server.properties").display(),
            self.dir.join("broker.log").display()
        );
        let child = Command::new("sh").arg("-c").arg(script).stdin(Stdio::piped()).spawn().expect("sh starts");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let consumer: BaseConsumer = self.config().create().expect("client");
            if consumer.fetch_metadata(None, Duration::from_secs(2)).is_ok_and(|m| !m.brokers().is_empty()) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the broker did not start: {}",
                std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stop the broker (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"stop\n");
            }
            let _ = child.wait();
        }
    }

    /// Start it again after [`Broker::stop`], on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// A client configuration for this broker.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.servers);
        c
    }

    /// Create `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new())).expect("create");
        for r in results {
            r.expect("topic created");
        }
        // wait until every partition has a leader
        let consumer: BaseConsumer = self.config().create().expect("client");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(m) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
                let t = m.topics().iter().find(|t| t.name() == topic);
                if t.is_some_and(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                }) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {topic} has no leaders");
    }

    /// Grow `topic` to `partitions` partitions.
    pub fn add_partitions(&self, topic: &str, partitions: usize) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let new = NewPartitions::new(topic, partitions);
        let results = futures::executor::block_on(admin.create_partitions([&new], &AdminOptions::new())).expect("grow");
        for r in results {
            r.expect("partitions added");
        }
    }

    /// Write `records` (partition, value) to `topic` and wait until they are stored.
    pub fn produce(&self, topic: &str, records: &[(Option<i32>, &str)]) {
        let producer: BaseProducer = self.config().set("linger.ms", "5").create().expect("producer");
        for (partition, value) in records {
            let mut r: BaseRecord<'_, [u8], str> = BaseRecord::to(topic).payload(*value);
            if let Some(p) = partition {
                r = r.partition(*p);
            }
            let mut r = r;
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        r = back;
                        producer.poll(Duration::from_millis(20));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
    }

    /// Write records with headers (`None`: a header without a value) to partition 0 of
    /// `topic`, in order.
    pub fn produce_with_headers(&self, topic: &str, records: &[(&str, Headers)]) {
        let producer: BaseProducer = self.config().create().expect("producer");
        for (value, headers) in records {
            let mut h = OwnedHeaders::new();
            for (key, value) in *headers {
                h = h.insert(Header { key, value: *value });
            }
            let r: BaseRecord<'_, [u8], str> = BaseRecord::to(topic).payload(*value).partition(0).headers(h);
            producer.send(r).map_err(|(e, _)| e).expect("sent");
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
    }

    /// Write keyed records (`None`: a tombstone) to `topic`, in order.
    pub fn produce_keyed(&self, topic: &str, records: &[(&str, Option<&str>)]) {
        let producer: BaseProducer = self.config().create().expect("producer");
        for (key, value) in records {
            let mut r: BaseRecord<'_, str, str> = BaseRecord::to(topic).key(*key).partition(0);
            if let Some(v) = value {
                r = r.payload(*v);
            }
            producer.send(r).map_err(|(e, _)| e).expect("sent");
        }
        producer.flush(Duration::from_secs(30)).expect("flushed");
    }

    /// Every record value of `topic` (read committed, or everything), in partition order.
    pub fn values(&self, topic: &str, committed: bool) -> Vec<String> {
        let isolation = if committed { "read_committed" } else { "read_uncommitted" };
        let consumer: BaseConsumer = self
            .config()
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .set("group.id", "weir-tests")
            .create()
            .expect("consumer");
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning).expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut ended = std::collections::BTreeSet::new();
        let mut values = Vec::new();
        let started = Instant::now();
        while ended.len() < partitions.len() {
            assert!(started.elapsed() < Duration::from_secs(60), "reading {topic} took too long");
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        values
    }

    /// The broker's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// Where the broker keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
