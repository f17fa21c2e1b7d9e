//! rtpmeter: the media side of `scripts/bench/sip.sh`.
//!
//! SIPp does the signalling of every call (`media_uac.xml`, `media_uas.xml`);
//! this program carries the media of those calls through the relay under
//! test and measures what the relay does to it.
//!
//! * Caller side ("A"): for each call SIPp's uac logs `MEDIA <call> <ip>
//!   <port>` (the relay's answer) to its log file, which we follow. We bind
//!   the port the offer named (SIPp's `[auto_media_port+4]`: `abase + 4 +
//!   4 * ((call - 1) % 2500)`) and send one G.711 A-law packet (20 ms, 160
//!   bytes) every 20 ms to the relay, until SIPp logs `END <call>` (the BYE
//!   follows 500 ms later).
//! * Callee side ("B"): SIPp's uas answers every call with 127.0.0.1:uport,
//!   one socket here. The first packet of a call that reaches it names the
//!   relay's port for that call (symmetric RTP); from then on we send that
//!   call's reverse stream from uport to that port, also every 20 ms.
//!
//! Every payload starts with a magic number, the call, the direction, a
//! sequence number and the sending time (CLOCK_REALTIME, ns, read just
//! before `sendto`); the relays pass G.711 payloads through unchanged when
//! both legs use the same law, whatever they do to the RTP header. Arrival
//! times are the kernel's receive timestamps (SO_TIMESTAMPNS), so our own
//! scheduling delays do not count. Per stream (call and direction) we keep
//! the RFC 3550 interarrival jitter estimator over the transit time
//! (arrival - send): that is the delay variation the path added (relay,
//! plus the loopback and the sender's last microseconds, which `--direct`
//! measures without any relay). Loss is 1 - received / sent, per direction.
//!
//! Usage:
//!   rtpmeter --log FILE --stop FILE [--abase 10000] [--uport 9000] [--pt 8] > result.json
//!   rtpmeter --direct N --ramp S --hold S [--abase ..] [--uport ..] > result.json
//! It stops when the stop file exists (or, with --direct, by itself), waits
//! 300 ms for packets in flight, and prints one JSON object.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

const MAGIC: u32 = 0x5342_4d31;
const PTIME_NS: u64 = 20_000_000;
const PAYLOAD: usize = 160;
const PKT: usize = 12 + PAYLOAD;
const U_KEY: u64 = u64::MAX;
/// Transit histogram: 10 µs buckets up to 200 ms.
const HBUCKET_NS: u64 = 10_000;
const HBUCKETS: usize = 20_000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Args {
    log: Option<String>,
    stop: Option<String>,
    abase: u16,
    uport: u16,
    direct: u32,
    ramp_s: f64,
    hold_s: f64,
    pt: u8,
}

fn args() -> Args {
    let mut a = Args {
        log: None,
        stop: None,
        abase: 10000,
        uport: 9000,
        direct: 0,
        ramp_s: 5.0,
        hold_s: 10.0,
        pt: 8,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--log" => a.log = Some(val),
            "--stop" => a.stop = Some(val),
            "--abase" => a.abase = val.parse().expect("--abase PORT"),
            "--uport" => a.uport = val.parse().expect("--uport PORT"),
            "--direct" => a.direct = val.parse().expect("--direct N"),
            "--ramp" => a.ramp_s = val.parse().expect("--ramp SECONDS"),
            "--hold" => a.hold_s = val.parse().expect("--hold SECONDS"),
            "--pt" => a.pt = val.parse().expect("--pt 0|8"),
            other => {
                eprintln!("rtpmeter: unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if a.direct == 0 && (a.log.is_none() || a.stop.is_none()) {
        eprintln!("rtpmeter: give --log FILE --stop FILE, or --direct N");
        std::process::exit(2);
    }
    a
}

fn a_port(abase: u16, call: u32) -> u16 {
    abase + 4 + (4 * ((call - 1) % 2500)) as u16
}

fn setopt(fd: RawFd, level: i32, name: i32, val: i32) {
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &val as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r != 0 {
        eprintln!("rtpmeter: setsockopt({level}, {name}) failed: {}", std::io::Error::last_os_error());
    }
}

fn open_socket(port: u16, rcvbuf: i32) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))?;
    s.set_nonblocking(true)?;
    let fd = s.as_raw_fd();
    setopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf);
    setopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, rcvbuf);
    Ok(s)
}

fn epoll_add(ep: RawFd, fd: RawFd, key: u64) {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: key };
    let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if r != 0 {
        eprintln!("rtpmeter: epoll_ctl: {}", std::io::Error::last_os_error());
    }
}

enum Cmd {
    /// Start sending `dir` of `call` from `sock` to `dst`.
    Start { call: u32, dir: u8, sock: Arc<UdpSocket>, dst: SocketAddr },
    /// Stop both directions of `call`.
    Stop { call: u32 },
}

struct TxStream {
    sock: Arc<UdpSocket>,
    dst: SocketAddr,
    seq: u32,
    next_ns: u64,
}

#[derive(Default)]
struct TxStats {
    sent: [u64; 2],
    send_errors: u64,
    late: Vec<u64>, // histogram of lateness, 10 µs buckets
}

fn sender(rx: mpsc::Receiver<Cmd>, done: Arc<AtomicBool>, pt: u8) -> TxStats {
    let mut streams: HashMap<(u32, u8), TxStream> = HashMap::new();
    let mut stopped: HashSet<u32> = HashSet::new();
    let mut heap: BinaryHeap<Reverse<(u64, u32, u8)>> = BinaryHeap::new();
    let mut st = TxStats { late: vec![0; HBUCKETS + 1], ..Default::default() };
    // Silence in the law's encoding after our header.
    let mut pkt = [if pt == 0 { 0xFFu8 } else { 0xD5u8 }; PKT];
    pkt[0] = 0x80;
    pkt[1] = pt;
    loop {
        // Commands first.
        loop {
            match rx.try_recv() {
                Ok(Cmd::Start { call, dir, sock, dst }) => {
                    if stopped.contains(&call) || streams.contains_key(&(call, dir)) {
                        continue;
                    }
                    let t = now_ns();
                    streams.insert((call, dir), TxStream { sock, dst, seq: 0, next_ns: t });
                    heap.push(Reverse((t, call, dir)));
                }
                Ok(Cmd::Stop { call }) => {
                    stopped.insert(call);
                    streams.remove(&(call, 0));
                    streams.remove(&(call, 1));
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return st,
            }
        }
        if done.load(Ordering::Relaxed) {
            return st;
        }
        let now = now_ns();
        while let Some(Reverse((due, call, dir))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            let Some(s) = streams.get_mut(&(call, dir)) else { continue };
            if s.next_ns != due {
                continue;
            }
            let ssrc = call.wrapping_mul(2) + dir as u32;
            pkt[2..4].copy_from_slice(&(s.seq as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&(s.seq.wrapping_mul(160)).to_be_bytes());
            pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
            pkt[12..16].copy_from_slice(&MAGIC.to_be_bytes());
            pkt[16..20].copy_from_slice(&call.to_be_bytes());
            pkt[20..24].copy_from_slice(&(dir as u32).to_be_bytes());
            pkt[24..28].copy_from_slice(&s.seq.to_be_bytes());
            let t = now_ns();
            pkt[28..36].copy_from_slice(&t.to_be_bytes());
            match s.sock.send_to(&pkt, s.dst) {
                Ok(_) => st.sent[dir as usize] += 1,
                Err(_) => st.send_errors += 1,
            }
            let late = t.saturating_sub(due) / HBUCKET_NS;
            st.late[(late as usize).min(HBUCKETS)] += 1;
            s.seq += 1;
            s.next_ns = due + PTIME_NS;
            heap.push(Reverse((s.next_ns, call, dir)));
        }
        let wait = match heap.peek() {
            Some(Reverse((due, _, _))) => due.saturating_sub(now_ns()).min(2_000_000),
            None => 2_000_000,
        };
        if wait > 0 {
            thread::sleep(Duration::from_nanos(wait));
        }
    }
}

#[derive(Default)]
struct RxStream {
    count: u64,
    last_transit: Option<i64>,
    j: f64,
    jsum: f64,
    jn: u64,
    seen: Vec<u64>,
    max_seq: Option<u32>,
    dups: u64,
    reordered: u64,
}

struct RxStats {
    streams: HashMap<(u32, u8), RxStream>,
    transit: Vec<u64>,
    foreign: u64,
    no_timestamp: u64,
    latched: u64,
}

fn receiver(
    ep: RawFd,
    u_sock: Arc<UdpSocket>,
    a_fds: Arc<std::sync::Mutex<HashMap<u32, RawFd>>>,
    tx: mpsc::Sender<Cmd>,
    done: Arc<AtomicBool>,
) -> RxStats {
    let mut st = RxStats {
        streams: HashMap::new(),
        transit: vec![0; HBUCKETS + 1],
        foreign: 0,
        no_timestamp: 0,
        latched: 0,
    };
    let mut latched: HashSet<u32> = HashSet::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 2048];
    let mut cbuf = [0u64; 16];
    let u_fd = u_sock.as_raw_fd();
    loop {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 50) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {e}");
        }
        if n == 0 && done.load(Ordering::Relaxed) {
            return st;
        }
        for ev in &events[..n as usize] {
            let key = ev.u64;
            let fd = if key == U_KEY {
                u_fd
            } else {
                match a_fds.lock().unwrap().get(&(key as u32)) {
                    Some(fd) => *fd,
                    None => continue,
                }
            };
            loop {
                let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
                msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
                msg.msg_controllen = std::mem::size_of_val(&cbuf);
                let len = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
                if len < 0 {
                    break; // EAGAIN (or ICMP errors reported on the socket): next socket
                }
                let len = len as usize;
                let mut rx_ns: Option<u64> = None;
                unsafe {
                    let mut c = libc::CMSG_FIRSTHDR(&msg);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                            let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                            rx_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                        }
                        c = libc::CMSG_NXTHDR(&msg, c);
                    }
                }
                if len < 36 || u32::from_be_bytes(buf[12..16].try_into().unwrap()) != MAGIC {
                    st.foreign += 1;
                    continue;
                }
                let rx_ns = match rx_ns {
                    Some(t) => t,
                    None => {
                        st.no_timestamp += 1;
                        now_ns()
                    }
                };
                let call = u32::from_be_bytes(buf[16..20].try_into().unwrap());
                let dir = u32::from_be_bytes(buf[20..24].try_into().unwrap()) as u8;
                let seq = u32::from_be_bytes(buf[24..28].try_into().unwrap());
                let sent = u64::from_be_bytes(buf[28..36].try_into().unwrap());
                if dir == 0 && fd == u_fd && !latched.contains(&call) {
                    latched.insert(call);
                    st.latched += 1;
                    let src = SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                        u16::from_be(addr.sin_port),
                    ));
                    let _ = tx.send(Cmd::Start { call, dir: 1, sock: u_sock.clone(), dst: src });
                }
                let transit = rx_ns as i64 - sent as i64;
                let b = (transit.max(0) as u64 / HBUCKET_NS) as usize;
                st.transit[b.min(HBUCKETS)] += 1;
                let s = st.streams.entry((call, dir)).or_default();
                let word = (seq / 64) as usize;
                if s.seen.len() <= word {
                    s.seen.resize(word + 1, 0);
                }
                if s.seen[word] & (1 << (seq % 64)) != 0 {
                    s.dups += 1;
                    continue;
                }
                s.seen[word] |= 1 << (seq % 64);
                s.count += 1;
                match s.max_seq {
                    Some(m) if seq < m => s.reordered += 1,
                    _ => s.max_seq = Some(seq),
                }
                if let Some(last) = s.last_transit {
                    // RFC 3550 A.8, in ns.
                    let d = (transit - last).abs() as f64;
                    s.j += (d - s.j) / 16.0;
                    s.jsum += s.j;
                    s.jn += 1;
                }
                s.last_transit = Some(transit);
            }
        }
    }
}

fn pct_hist(h: &[u64], p: f64) -> f64 {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, c) in h.iter().enumerate() {
        acc += c;
        if acc >= want {
            return (i as f64 + 0.5) * HBUCKET_NS as f64 / 1e6;
        }
    }
    (h.len() as f64) * HBUCKET_NS as f64 / 1e6
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = (((v.len() as f64) * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn main() {
    let a = args();
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    let u_sock = Arc::new(open_socket(a.uport, 8 << 20).unwrap_or_else(|e| {
        eprintln!("rtpmeter: cannot bind 127.0.0.1:{}: {e}", a.uport);
        std::process::exit(2)
    }));
    epoll_add(ep, u_sock.as_raw_fd(), U_KEY);
    let done = Arc::new(AtomicBool::new(false));
    let stop_follow = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Cmd>();
    let a_fds: Arc<std::sync::Mutex<HashMap<u32, RawFd>>> = Arc::default();
    let bind_errors = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));

    let snd = {
        let (done, pt) = (done.clone(), a.pt);
        thread::spawn(move || sender(rx, done, pt))
    };
    let rcv = {
        let (done, u, fds, tx) = (done.clone(), u_sock.clone(), a_fds.clone(), tx.clone());
        thread::spawn(move || receiver(ep, u, fds, tx, done))
    };

    // A call's media starts: bind its caller-side socket and start sending.
    let start_call = {
        let (fds, tx, be, started) = (a_fds.clone(), tx.clone(), bind_errors.clone(), started.clone());
        let abase = a.abase;
        move |socks: &mut Vec<Arc<UdpSocket>>, call: u32, dst: SocketAddr| {
            let port = a_port(abase, call);
            match open_socket(port, 256 << 10) {
                Ok(s) => {
                    let s = Arc::new(s);
                    fds.lock().unwrap().insert(call, s.as_raw_fd());
                    epoll_add(ep, s.as_raw_fd(), call as u64);
                    socks.push(s.clone());
                    started.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(Cmd::Start { call, dir: 0, sock: s, dst });
                }
                Err(e) => {
                    if be.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("rtpmeter: cannot bind 127.0.0.1:{port} for call {call}: {e}");
                    }
                }
            }
        }
    };

    let follower = {
        let tx = tx.clone();
        let stop_follow = stop_follow.clone();
        let log = a.log.clone();
        let (direct, ramp, hold, uport) = (a.direct, a.ramp_s, a.hold_s, a.uport);
        thread::spawn(move || {
            let mut socks: Vec<Arc<UdpSocket>> = Vec::new();
            if direct > 0 {
                // No relay: the caller side sends straight to the callee socket.
                let dst = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, uport));
                let t0 = std::time::Instant::now();
                let gap = ramp / direct as f64;
                let mut ends: Vec<(f64, u32)> = Vec::new();
                for call in 1..=direct {
                    let at = gap * (call - 1) as f64;
                    while t0.elapsed().as_secs_f64() < at {
                        thread::sleep(Duration::from_millis(1));
                    }
                    start_call(&mut socks, call, dst);
                    ends.push((at + hold, call));
                }
                for (at, call) in ends {
                    while t0.elapsed().as_secs_f64() < at {
                        thread::sleep(Duration::from_millis(5));
                    }
                    let _ = tx.send(Cmd::Stop { call });
                }
                return socks;
            }
            let path = log.unwrap();
            let f = loop {
                match std::fs::File::open(&path) {
                    Ok(f) => break f,
                    Err(_) if !stop_follow.load(Ordering::Relaxed) => thread::sleep(Duration::from_millis(20)),
                    Err(_) => return socks,
                }
            };
            let mut r = BufReader::new(f);
            let mut line = String::new();
            loop {
                let n = r.read_line(&mut line).unwrap_or(0);
                if n == 0 || !line.ends_with('\n') {
                    if stop_follow.load(Ordering::Relaxed) {
                        return socks;
                    }
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let w: Vec<&str> = line.split_whitespace().collect();
                match w.as_slice() {
                    ["MEDIA", call, ip, port, ..] => {
                        if let (Ok(call), Ok(ip), Ok(port)) =
                            (call.parse::<u32>(), ip.parse::<Ipv4Addr>(), port.parse::<u16>())
                        {
                            start_call(&mut socks, call, SocketAddr::V4(SocketAddrV4::new(ip, port)));
                        }
                    }
                    ["END", call, ..] => {
                        if let Ok(call) = call.parse::<u32>() {
                            let _ = tx.send(Cmd::Stop { call });
                        }
                    }
                    _ => {}
                }
                line.clear();
            }
        })
    };

    if a.direct > 0 {
        let socks = follower.join().unwrap();
        thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        report(snd.join().unwrap(), rcv.join().unwrap(), started.load(Ordering::Relaxed), bind_errors.load(Ordering::Relaxed));
        drop(socks);
        return;
    }
    let stop = a.stop.unwrap();
    while !std::path::Path::new(&stop).exists() {
        thread::sleep(Duration::from_millis(100));
    }
    stop_follow.store(true, Ordering::Relaxed);
    let socks = follower.join().unwrap();
    thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    drop(tx);
    report(snd.join().unwrap(), rcv.join().unwrap(), started.load(Ordering::Relaxed), bind_errors.load(Ordering::Relaxed));
    drop(socks);
}

fn report(tx: TxStats, rx: RxStats, started: u64, bind_errors: u64) {
    let mut recv = [0u64; 2];
    let (mut dups, mut reordered) = (0u64, 0u64);
    let mut jit: Vec<f64> = Vec::new();
    let mut jit_final: Vec<f64> = Vec::new();
    for ((_, dir), s) in &rx.streams {
        recv[*dir as usize & 1] += s.count;
        dups += s.dups;
        reordered += s.reordered;
        if s.jn > 0 {
            jit.push(s.jsum / s.jn as f64 / 1e6);
            jit_final.push(s.j / 1e6);
        }
    }
    jit.sort_by(|a, b| a.partial_cmp(b).unwrap());
    jit_final.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let sent_all = tx.sent[0] + tx.sent[1];
    let recv_all = recv[0] + recv[1];
    let loss = |s: u64, r: u64| if s == 0 { 1.0 } else { 1.0 - (r.min(s) as f64 / s as f64) };
    let mean = if jit.is_empty() { 0.0 } else { jit.iter().sum::<f64>() / jit.len() as f64 };
    let out = format!(
        concat!(
            "{{\"calls_started\":{},\"calls_latched\":{},\"bind_errors\":{},\"streams\":{},",
            "\"sent\":[{},{}],\"received\":[{},{}],\"send_errors\":{},",
            "\"loss\":{:.6},\"loss_fwd\":{:.6},\"loss_back\":{:.6},",
            "\"duplicates\":{},\"reordered\":{},\"foreign\":{},\"no_timestamp\":{},",
            "\"jitter_ms\":{{\"mean\":{:.4},\"p50\":{:.4},\"p99\":{:.4},\"max\":{:.4}}},",
            "\"jitter_final_ms\":{{\"p50\":{:.4},\"p99\":{:.4}}},",
            "\"transit_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3}}},",
            "\"send_late_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3}}}}}"
        ),
        started,
        rx.latched,
        bind_errors,
        rx.streams.len(),
        tx.sent[0],
        tx.sent[1],
        recv[0],
        recv[1],
        tx.send_errors,
        loss(sent_all, recv_all),
        loss(tx.sent[0], recv[0]),
        loss(tx.sent[1], recv[1]),
        dups,
        reordered,
        rx.foreign,
        rx.no_timestamp,
        mean,
        pct(&jit, 0.5),
        pct(&jit, 0.99),
        jit.last().copied().unwrap_or(0.0),
        pct(&jit_final, 0.5),
        pct(&jit_final, 0.99),
        pct_hist(&rx.transit, 0.5),
        pct_hist(&rx.transit, 0.99),
        pct_hist(&rx.transit, 0.999),
        pct_hist(&tx.late, 0.5),
        pct_hist(&tx.late, 0.99),
        pct_hist(&tx.late, 0.999),
    );
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{out}");
}
