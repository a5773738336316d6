//! `--ssh` on builder nodes: the client's ssh agents, reached over the
//! session. On the node, [`NodeAgents`] listens on one socket per id (the
//! build's RUN steps forward their ssh mounts to it, as to a local agent);
//! each connection is an `AgentOpen` to the client, its bytes `AgentData`
//! messages, its end an `AgentClose`. The client ([`ClientAgents`])
//! connects to its own agent for each and relays: the agent protocol
//! answers every request with one reply, so a request read whole is
//! written to the agent and its reply read whole and sent back, inside the
//! session's message loop. Nothing but agent messages crosses: the keys
//! stay with the client's agent.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempDir;

use crate::wire::{Frame, Msg};

/// The largest agent message relayed (the protocol's own limit is 256 KiB).
const MAX_MESSAGE: usize = 256 << 10;

/// Sends a message to the client.
pub type Send = Arc<dyn Fn(&Msg) + std::marker::Send + Sync>;

/// The node's open agent connections, by number: where the client's
/// replies are written.
#[derive(Clone, Default)]
pub struct Conns(Arc<Mutex<HashMap<u64, UnixStream>>>);

impl Conns {
    /// Handles the client's agent messages (replies, closes) and hands
    /// every other frame back.
    pub fn route(&self, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::Msg(Msg::AgentData { conn, data }) => {
                let mut conns = self.0.lock().ok()?;
                if let Some(s) = conns.get_mut(&conn) {
                    if s.write_all(&data).is_err() {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        conns.remove(&conn);
                    }
                }
                None
            }
            Frame::Msg(Msg::AgentClose { conn }) => {
                if let Some(s) = self.0.lock().ok()?.remove(&conn) {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                None
            }
            other => Some(other),
        }
    }

    fn insert(&self, conn: u64, s: UnixStream) {
        if let Ok(mut c) = self.0.lock() {
            c.insert(conn, s);
        }
    }

    fn remove(&self, conn: u64) {
        if let Ok(mut c) = self.0.lock() {
            c.remove(&conn);
        }
    }
}

/// The node's agent sockets of one build; they stop and go with it.
pub struct NodeAgents {
    sockets: BTreeMap<String, PathBuf>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _dir: TempDir,
}

impl NodeAgents {
    /// Listens for each of `ids` in a private directory below `tmp`.
    pub fn start(ids: &[String], tmp: &Path, send: Send, conns: Conns) -> io::Result<NodeAgents> {
        let dir = polyarch_builder::ssh::socket_dir(tmp).map_err(io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let mut out = NodeAgents { sockets: BTreeMap::new(), stop: stop.clone(), threads: Vec::new(), _dir: dir };
        for (i, id) in ids.iter().enumerate() {
            let path = out._dir.path().join(format!("agent-{i}.sock"));
            let listener = UnixListener::bind(&path)?;
            listener.set_nonblocking(true)?;
            out.sockets.insert(id.clone(), path);
            let (id, stop, next, send, conns) = (id.clone(), stop.clone(), next.clone(), send.clone(), conns.clone());
            out.threads.push(std::thread::spawn(move || accept(&listener, &id, &stop, &next, &send, &conns)));
        }
        Ok(out)
    }

    /// The socket of each id, for the build's RUN settings.
    pub fn sockets(&self) -> BTreeMap<String, PathBuf> {
        self.sockets.clone()
    }
}

impl Drop for NodeAgents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept(listener: &UnixListener, id: &str, stop: &AtomicBool, next: &AtomicU64, send: &Send, conns: &Conns) {
    while !stop.load(Ordering::SeqCst) {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let conn = next.fetch_add(1, Ordering::SeqCst);
        let Ok(writer) = stream.try_clone() else { continue };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        conns.insert(conn, writer);
        send(&Msg::AgentOpen { conn, id: id.to_string() });
        let (send, conns) = (send.clone(), conns.clone());
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                send(&Msg::AgentData { conn, data: buf[..n].to_vec() });
            }
            conns.remove(conn);
            send(&Msg::AgentClose { conn });
        });
    }
}

/// The client's side: its agents by id and the connections the node
/// opened to them.
pub struct ClientAgents<'a> {
    agents: &'a BTreeMap<String, PathBuf>,
    open: HashMap<u64, (UnixStream, Vec<u8>)>,
}

impl<'a> ClientAgents<'a> {
    /// Relays to `agents` (the build's `--ssh` sockets by id).
    pub fn new(agents: &'a BTreeMap<String, PathBuf>) -> ClientAgents<'a> {
        ClientAgents { agents, open: HashMap::new() }
    }

    /// Handles one agent message of the node, returning the messages to
    /// send back; `None` when `msg` is no agent message.
    pub fn handle(&mut self, msg: &Msg) -> Option<Vec<Msg>> {
        Some(match msg {
            Msg::AgentOpen { conn, id } => {
                let stream = self.agents.get(id).and_then(|p| UnixStream::connect(p).ok());
                match stream {
                    Some(s) if s.set_read_timeout(Some(Duration::from_secs(30))).is_ok() => {
                        self.open.insert(*conn, (s, Vec::new()));
                        Vec::new()
                    }
                    _ => vec![Msg::AgentClose { conn: *conn }],
                }
            }
            Msg::AgentData { conn, data } => match self.relay(*conn, data) {
                Ok(replies) => replies.into_iter().map(|data| Msg::AgentData { conn: *conn, data }).collect(),
                Err(_) => {
                    self.open.remove(conn);
                    vec![Msg::AgentClose { conn: *conn }]
                }
            },
            Msg::AgentClose { conn } => {
                self.open.remove(conn);
                Vec::new()
            }
            _ => return None,
        })
    }

    /// Writes each whole request of `data` (with what came before) to the
    /// agent and reads its reply.
    fn relay(&mut self, conn: u64, data: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let Some((stream, pending)) = self.open.get_mut(&conn) else { return Ok(Vec::new()) };
        pending.extend_from_slice(data);
        let mut replies = Vec::new();
        while let Some(len) = whole(pending)? {
            let request: Vec<u8> = pending.drain(..4 + len).collect();
            stream.write_all(&request)?;
            let mut head = [0u8; 4];
            stream.read_exact(&mut head)?;
            let n = u32::from_be_bytes(head) as usize;
            if n > MAX_MESSAGE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "agent reply too long"));
            }
            let mut reply = head.to_vec();
            reply.resize(4 + n, 0);
            stream.read_exact(&mut reply[4..])?;
            replies.push(reply);
        }
        Ok(replies)
    }
}

/// The body length of the first message of `pending` when it is whole.
fn whole(pending: &[u8]) -> io::Result<Option<usize>> {
    let Some(head) = pending.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "agent request too long"));
    }
    Ok((pending.len() >= 4 + len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent that answers every message with its body reversed.
    fn reversing_agent(path: &Path) -> JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut head = [0u8; 4];
            while c.read_exact(&mut head).is_ok() {
                let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
                c.read_exact(&mut body).unwrap();
                body.reverse();
                c.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
                c.write_all(&body).unwrap();
            }
        })
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_node_socket_reaches_the_clients_agent_through_messages() {
        let t = tempfile::tempdir().unwrap();
        let agent = t.path().join("agent.sock");
        let served = reversing_agent(&agent);
        let agents = BTreeMap::from([("default".to_string(), agent)]);
        let mut client = ClientAgents::new(&agents);

        // The node's side, its messages to the client on a channel.
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let tx = Mutex::new(tx);
        let send: Send = Arc::new(move |m: &Msg| {
            let _ = tx.lock().unwrap().send(m.clone());
        });
        let conns = Conns::default();
        let node = NodeAgents::start(&["default".to_string()], &t.path().join("run"), send, conns.clone()).unwrap();
        let socket = node.sockets()["default"].clone();
        let step = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&socket).unwrap();
            // Two requests in one write, the second split across writes.
            let mut both = framed(b"abc");
            both.extend_from_slice(&framed(b"hello")[..5]);
            s.write_all(&both).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(&framed(b"hello")[5..]).unwrap();
            let mut back = vec![0u8; 7 + 9];
            s.read_exact(&mut back).unwrap();
            back
        });
        // The session's loop: node messages to the client, replies back.
        let mut got = Vec::new();
        while got.len() < 7 + 9 {
            let m = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            for reply in client.handle(&m).expect("an agent message") {
                if let Msg::AgentData { data, .. } = &reply {
                    got.extend_from_slice(data);
                }
                assert!(conns.route(Frame::Msg(reply)).is_none());
            }
        }
        let mut want = framed(b"cba");
        want.extend_from_slice(&framed(b"olleh"));
        assert_eq!(step.join().unwrap(), want);
        assert_eq!(got, want);
        assert!(client.handle(&Msg::Bye).is_none(), "not an agent message");
        assert!(conns.route(Frame::Msg(Msg::Bye)).is_some(), "other frames pass");
        drop(node);
        assert!(std::fs::read_dir(t.path().join("run")).unwrap().next().is_none(), "the sockets' directory is gone");
        drop(client);
        let _ = served;
    }

    #[test]
    fn an_unknown_id_or_a_bad_request_closes_the_connection() {
        let agents = BTreeMap::new();
        let mut client = ClientAgents::new(&agents);
        let closed = client.handle(&Msg::AgentOpen { conn: 3, id: "nope".into() }).unwrap();
        assert_eq!(closed, vec![Msg::AgentClose { conn: 3 }]);
        assert!(whole(&[0xff, 0xff, 0xff, 0xff]).is_err(), "a length beyond the protocol's limit");
        assert_eq!(whole(&framed(b"ab")[..5]).unwrap(), None);
        assert_eq!(whole(&framed(b"ab")).unwrap(), Some(2));
    }
}
