//! The network between a stack's processes, where a chaos run can break it. Every link a fault may
//! hit (a region's services to their databases and broker, one region to another's broker and
//! databases, each region to each ARC endpoint) is a TCP relay on a port of its own, and the
//! processes are given the relay's address instead of the server's. A link is open, slow (each
//! chunk is delivered a fixed time after it was read, so throughput holds while latency grows),
//! dropped (nothing gets through and nobody is told, as when packets vanish between regions: what
//! was sent waits, and arrives if the link heals before either end gives up) or cut (every
//! connection is reset and new ones are refused).
//!
//! The relays run on a runtime of their own, so that a test blocked in a `pg_ctl` or a sleep does
//! not stall its stack's network.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use keel_routing::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link does to the bytes crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Open,
    Slow(Duration),
    Dropped,
    Cut,
}

/// One end of a link: the region whose processes connect, or [`OPERATOR`].
pub type Region = String;

/// Where keelctl and the harness stand: outside every region, reaching every server directly
/// but the runbook store, which is held unreachable while it restarts (it replays its
/// recording then, and a request served meanwhile would not be recorded).
pub const OPERATOR: &str = "operator";

/// What a link leads to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// A region's Kafka cluster.
    Broker(Region),
    /// An application's database cluster in a region (a standby's replication stream to its
    /// primary is one too).
    Database(App, Region),
    /// An ARC cluster endpoint, in no region of the stack's.
    Arc(usize),
    /// The DynamoDB endpoint of the runbook lock, journals and audit.
    RunbookStore,
}

impl Peer {
    pub fn region(&self) -> Option<&str> {
        match self {
            Peer::Broker(region) | Peer::Database(_, region) => Some(region),
            Peer::Arc(_) | Peer::RunbookStore => None,
        }
    }
}

/// A link: from the processes of a region to a peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkId {
    pub from: Region,
    pub to: Peer,
}

impl LinkId {
    /// Whether the link leaves its region (the ARC endpoints are outside every region).
    pub fn between_regions(&self) -> bool {
        self.to.region() != Some(self.from.as_str())
    }

    /// Whether cutting `region` off from the rest breaks this link.
    pub fn crosses_the_border_of(&self, region: &str) -> bool {
        self.between_regions() && (self.from == region || self.to.region() == Some(region))
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            Peer::Broker(region) => write!(f, "{} -> broker {region}", self.from),
            Peer::Database(app, region) => write!(f, "{} -> {app} database {region}", self.from),
            Peer::Arc(index) => write!(f, "{} -> ARC endpoint {index}", self.from),
            Peer::RunbookStore => write!(f, "{} -> the runbook store", self.from),
        }
    }
}

/// One link's relay: its port, what it does now, and what each fault still in force asks of it.
struct Relay {
    port: u16,
    condition: watch::Sender<Condition>,
    imposed: BTreeMap<u64, Condition>,
}

impl Relay {
    /// The worst of what is imposed: a cut over a drop over the longest delay.
    fn apply(&self) {
        let worst = self
            .imposed
            .values()
            .copied()
            .max_by_key(|condition| match condition {
                Condition::Open => (0, Duration::ZERO),
                Condition::Slow(latency) => (1, *latency),
                Condition::Dropped => (2, Duration::ZERO),
                Condition::Cut => (3, Duration::ZERO),
            })
            .unwrap_or(Condition::Open);
        self.condition.send_if_modified(|now| {
            let changed = *now != worst;
            *now = worst;
            changed
        });
    }
}

/// A fault's hold on some links, until it is lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imposition {
    id: u64,
    pub links: Vec<LinkId>,
}

/// The stack's links, each with its relay.
pub struct Network {
    runtime: Option<tokio::runtime::Runtime>,
    relays: Mutex<(u64, BTreeMap<LinkId, Relay>)>,
}

impl Network {
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keel-test-network")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            relays: Mutex::new((0, BTreeMap::new())),
        })
    }

    /// The port of `link`'s relay to `upstream`, made on first use (the same port for as long as
    /// the stack lives, so a server restarted on its own port is reached again).
    pub fn port(&self, link: LinkId, upstream: u16) -> anyhow::Result<u16> {
        let mut relays = self.relays.lock().expect("relays");
        if let Some(relay) = relays.1.get(&link) {
            return Ok(relay.port);
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (condition, watcher) = watch::channel(Condition::Open);
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        let runtime = self.runtime.as_ref().expect("running");
        let _entered = runtime.enter();
        let listener = TcpListener::from_std(listener)?;
        runtime.spawn(serve(listener, upstream, watcher));
        relays.1.insert(
            link,
            Relay {
                port,
                condition,
                imposed: BTreeMap::new(),
            },
        );
        Ok(port)
    }

    /// Imposes `condition` on every link `which` picks, until [`Network::lift`]. Faults overlap:
    /// each link does the worst of what is imposed on it, and lifting one fault leaves the
    /// others in force.
    pub fn impose(&self, which: impl Fn(&LinkId) -> bool, condition: Condition) -> Imposition {
        let mut relays = self.relays.lock().expect("relays");
        relays.0 += 1;
        let id = relays.0;
        let mut links = Vec::new();
        for (link, relay) in relays.1.iter_mut().filter(|(link, _)| which(link)) {
            relay.imposed.insert(id, condition);
            relay.apply();
            links.push(link.clone());
        }
        Imposition { id, links }
    }

    pub fn lift(&self, imposition: &Imposition) {
        let mut relays = self.relays.lock().expect("relays");
        for link in &imposition.links {
            if let Some(relay) = relays.1.get_mut(link) {
                relay.imposed.remove(&imposition.id);
                relay.apply();
            }
        }
    }

    /// Every link open again, whatever was imposed.
    pub fn heal(&self) {
        let mut relays = self.relays.lock().expect("relays");
        for relay in relays.1.values_mut() {
            relay.imposed.clear();
            relay.apply();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr, condition: watch::Receiver<Condition>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            // Out of descriptors, say: the link is down for a moment, not for good.
            Err(error) => {
                eprintln!("network: relay to {upstream} could not accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if *condition.borrow() == Condition::Cut {
            reset(&inbound);
            continue;
        }
        tokio::spawn(relay(inbound, upstream, condition.clone()));
    }
}

/// Closes with a reset rather than a goodbye, as a broken path would.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn relay(
    inbound: TcpStream,
    upstream: SocketAddr,
    mut condition: watch::Receiver<Condition>,
) {
    // A dropped link carries nothing: the client's connection is made (the relay accepts it),
    // but the server hears of it only once the link heals; until then the client waits, or its
    // own timeout gives up.
    let Ok(now) = condition
        .wait_for(|c| *c != Condition::Dropped)
        .await
        .map(|c| *c)
    else {
        return;
    };
    if now == Condition::Cut {
        reset(&inbound);
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        reset(&inbound);
        return;
    };
    let mut inbound = inbound;
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (forth, back) = (condition.clone(), condition.clone());
    let cut = {
        let (inbound_read, inbound_write) = inbound.split();
        let (outbound_read, outbound_write) = outbound.split();
        let both_ways = async {
            tokio::join!(
                pump(inbound_read, outbound_write, forth),
                pump(outbound_read, inbound_write, back),
            )
        };
        tokio::select! {
            _ = both_ways => false,
            _ = condition.wait_for(|c| *c == Condition::Cut) => true,
        }
    };
    if cut {
        reset(&inbound);
        reset(&outbound);
    }
}

/// One direction: what is read is handed to a writer that holds each chunk until the link lets
/// it through, so a slow link delays every chunk by its own latency without serialising them.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut condition: watch::Receiver<Condition>,
) {
    let (chunks, mut pending) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            if chunks
                .send((Instant::now(), buffer[..read].to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((read_at, chunk)) = pending.recv().await {
            // Looked at again whenever the link changes: a chunk waiting out a delay on a link
            // that drops meanwhile waits for the heal, and one on a link that opens goes at once.
            loop {
                let now = *condition.borrow_and_update();
                match now {
                    Condition::Open => break,
                    Condition::Slow(latency) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(read_at + latency) => break,
                            changed = condition.changed() => if changed.is_err() { return },
                        }
                    }
                    Condition::Dropped => {
                        if condition.changed().await.is_err() {
                            return;
                        }
                    }
                    Condition::Cut => return,
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        port
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut answer = vec![0u8; bytes.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    fn link() -> LinkId {
        LinkId {
            from: "us-east-1".into(),
            to: Peer::Broker("us-west-2".into()),
        }
    }

    #[tokio::test]
    async fn an_open_link_relays_a_slow_one_delays_a_dropped_one_holds_until_healed() {
        let network = Network::new().unwrap();
        let port = network.port(link(), echo_server().await).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"open").await.unwrap(), b"open");

        let slow = network.impose(|_| true, Condition::Slow(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").await.unwrap(), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(300), "both ways");

        let dropped = network.impose(|_| true, Condition::Dropped);
        let held =
            tokio::time::timeout(Duration::from_millis(300), round_trip(&mut stream, b"held"))
                .await;
        assert!(held.is_err(), "nothing crosses a dropped link");
        network.lift(&slow);
        let still = tokio::time::timeout(Duration::from_millis(300), async {
            let mut answer = [0u8; 4];
            stream.read_exact(&mut answer).await
        })
        .await;
        assert!(
            still.is_err(),
            "lifting another fault leaves the drop in force"
        );
        network.lift(&dropped);
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"held", "what was sent arrives once it heals");
    }

    #[tokio::test]
    async fn a_cut_link_resets_its_connections_and_refuses_new_ones() {
        let network = Network::new().unwrap();
        let port = network.port(link(), echo_server().await).unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"open").await.unwrap(), b"open");
        assert_eq!(network.impose(|_| true, Condition::Cut).links, vec![link()]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(round_trip(&mut stream, b"gone").await.is_err());
        // Refused: reset as soon as it is accepted, which the client may see while connecting.
        let refused = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(mut again) => round_trip(&mut again, b"new").await.is_err(),
            Err(_) => true,
        };
        assert!(refused);
        network.heal();
        let mut healed = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(round_trip(&mut healed, b"back").await.unwrap(), b"back");
    }

    #[test]
    fn cutting_a_region_off_breaks_only_the_links_across_its_border() {
        let east = || "us-east-1".to_owned();
        let west = || "us-west-2".to_owned();
        let link = |from: String, to: Peer| LinkId { from, to };
        assert!(link(east(), Peer::Broker(west())).crosses_the_border_of("us-east-1"));
        assert!(link(west(), Peer::Broker(east())).crosses_the_border_of("us-east-1"));
        assert!(link(east(), Peer::Arc(0)).crosses_the_border_of("us-east-1"));
        assert!(!link(west(), Peer::Arc(0)).crosses_the_border_of("us-east-1"));
        assert!(!link(east(), Peer::Broker(east())).crosses_the_border_of("us-east-1"));
        assert!(!link(east(), Peer::Database(App::Settlement, east()))
            .crosses_the_border_of("us-east-1"));
        assert!(link(west(), Peer::Database(App::Settlement, east()))
            .crosses_the_border_of("us-east-1"));
    }
}
