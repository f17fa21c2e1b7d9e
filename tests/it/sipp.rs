//! SIPp for the SIP tests: running it (callers, far ends on ports of their
//! own, its error logs in a failure's message) and the scenarios the far
//! ends play, built from a few parameters: which provisional responses, a
//! pause before the final answer, the answer (or refusal) and who hangs up.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::helpers::free_udp_block;

pub(crate) fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What SIPp's `-trace_err` wrote in `dir`.
pub(crate) fn logs(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// Runs SIPp with `args` in `dir`, in the background.
pub(crate) fn run(dir: &Path, args: Vec<String>) -> JoinHandle<Output> {
    let cwd = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("sipp")
            .current_dir(&cwd)
            .args(&args)
            .args(["-nostdin", "-trace_err"])
            .output()
            .expect("sipp runs")
    })
}

/// SIPp as a uas on `port` (`scenario` a file's text, or None for the
/// built-in `uas`), its media from `media`, for `calls` calls, with more
/// options `extra` (`-rtp_echo`, say); returned once it has had time to bind.
pub(crate) async fn uas(
    dir: &Path,
    scenario: Option<&str>,
    port: u16,
    media: u16,
    calls: u32,
    extra: &[&str],
) -> JoinHandle<Output> {
    let mut args: Vec<String> = match scenario {
        Some(text) => {
            let path = dir.join("uas.xml");
            std::fs::write(&path, text).unwrap();
            vec!["-sf".into(), path.to_string_lossy().into_owned()]
        }
        None => vec!["-sn".into(), "uas".into()],
    };
    args.extend(
        [
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mp",
            &media.to_string(),
            "-m",
            &calls.to_string(),
            "-timeout",
            "40",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string()),
    );
    let h = run(dir, args);
    // Let it bind before anything calls it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h
}

/// A trunk's far end: `uas` with media ports of its own.
pub(crate) async fn far_end(
    dir: &Path,
    scenario: Option<&str>,
    port: u16,
    calls: u32,
) -> JoinHandle<Output> {
    far_end_with(dir, scenario, port, calls, &[]).await
}

/// `far_end` with more SIPp options.
pub(crate) async fn far_end_with(
    dir: &Path,
    scenario: Option<&str>,
    port: u16,
    calls: u32,
    extra: &[&str],
) -> JoinHandle<Output> {
    uas(dir, scenario, port, free_udp_block(10), calls, extra).await
}

/// SIPp calling `number` at `server` once with `scenario` (`["-sn",
/// "uac_pcap"]`, or `-sf` and a file), its media from `media`, for at most
/// `timeout` seconds.
pub(crate) fn uac(
    dir: &Path,
    server: SocketAddr,
    scenario: [&str; 2],
    number: &str,
    media: u16,
    timeout: u32,
) -> JoinHandle<Output> {
    let args = [
        &server.to_string(),
        scenario[0],
        scenario[1],
        "-s",
        number,
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-mp",
        &media.to_string(),
        "-m",
        "1",
        "-timeout",
        &timeout.to_string(),
    ];
    run(dir, args.iter().map(|a| a.to_string()).collect())
}

/// SIPp (`what`) ran its scenario through, else its output and logs.
pub(crate) fn assert_ran(out: &Output, what: &str, dir: &Path) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs(dir)
    );
}

/// `assert_ran` for a trunk's far end.
pub(crate) fn assert_ok(out: &Output, dir: &Path) {
    assert_ran(out, "the trunk's far end (sipp uas)", dir);
}

/// The media of an SDP: the `m=audio` line's formats, then their `a=` lines.
pub(crate) const PCMU: &str = "0\na=rtpmap:0 PCMU/8000";
pub(crate) const PCMA: &str = "8\na=rtpmap:8 PCMA/8000";
pub(crate) const PCMA_DTMF: &str = "8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000";

/// The SDP a far end sends: `origin` is the `o=` line's user, session and
/// version ("far 1 1"), `media` one of `PCMU`, `PCMA`, `PCMA_DTMF`.
#[derive(Clone, Copy)]
pub(crate) struct Sdp<'a> {
    pub origin: &'a str,
    pub media: &'a str,
}

impl Sdp<'_> {
    fn text(&self) -> String {
        format!(
            "v=0\no={} IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP {}\n",
            self.origin, self.media
        )
    }
}

/// A `<send>` of a response to the last request: `SIP/2.0 {status}` with
/// the request's Via, From, Call-ID and CSeq.
pub(crate) struct Reply {
    status: String,
    attrs: String,
    to: String,
    cseq: String,
    headers: String,
    body: String,
}

impl Reply {
    /// To tagged with SIPp's tag `SIPpTag0{tag}` (a dialog of the
    /// scenario's: 1, or 2 after a first refused one).
    pub fn new(status: &str, tag: u8) -> Self {
        Self::with_to(
            status,
            format!("[last_To:];tag=[pid]SIPpTag0{tag}[call_number]"),
        )
    }

    /// In a dialog: To as the request has it (the 200 to a BYE).
    pub fn in_dialog(status: &str) -> Self {
        Self::with_to(status, "[last_To:]".into())
    }

    fn with_to(status: &str, to: String) -> Self {
        Reply {
            status: status.into(),
            attrs: String::new(),
            to,
            cseq: "[last_CSeq:]".into(),
            headers: String::new(),
            body: String::new(),
        }
    }

    /// Sent again every 500 ms until answered (a 200 to an INVITE: until
    /// the ACK).
    pub fn retrans(mut self) -> Self {
        self.attrs.push_str(r#" retrans="500""#);
        self
    }

    /// Then on to the label `id`.
    pub fn next(mut self, id: &str) -> Self {
        self.attrs.push_str(&format!(r#" next="{id}""#));
        self
    }

    /// The CSeq line when it is not the request's.
    pub fn cseq(mut self, line: &str) -> Self {
        self.cseq = line.into();
        self
    }

    /// One more header line.
    pub fn header(mut self, line: &str) -> Self {
        self.headers.push_str(line);
        self.headers.push('\n');
        self
    }

    /// SIPp's own address as the Contact.
    pub fn contact(self) -> Self {
        self.header("Contact: <sip:[local_ip]:[local_port];transport=[transport]>")
    }

    pub fn sdp(mut self, sdp: Sdp) -> Self {
        self.body = sdp.text();
        self
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Reply {
            status,
            attrs,
            to,
            cseq,
            headers,
            body,
        } = self;
        let content = if body.is_empty() {
            "Content-Length: 0\n".to_owned()
        } else {
            format!("Content-Type: application/sdp\nContent-Length: [len]\n\n{body}")
        };
        write!(
            f,
            "  <send{attrs}><![CDATA[\nSIP/2.0 {status}\n[last_Via:]\n[last_From:]\n{to}\n[last_Call-ID:]\n{cseq}\n{headers}{content}\n]]></send>\n"
        )
    }
}

/// A scenario's first request (`crlf`: a blank line after it on SIPp's
/// screen).
pub(crate) fn recv_first(request: &str) -> String {
    format!("  <recv request=\"{request}\" crlf=\"true\"/>\n")
}

pub(crate) fn recv(request: &str) -> String {
    format!("  <recv request=\"{request}\"/>\n")
}

/// `recv`, then on to the label `id`.
pub(crate) fn recv_then(request: &str, id: &str) -> String {
    format!("  <recv request=\"{request}\" next=\"{id}\"/>\n")
}

/// A request whose Authorization SIPp checks (`verifyauth`) against
/// `user` and `password`: on to the label `good` when right.
pub(crate) fn recv_checking_auth(request: &str, user: &str, password: &str, good: &str) -> String {
    format!(
        r#"  <recv request="{request}" crlf="true">
    <action>
      <verifyauth assign_to="authvalid" username="{user}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="{good}"/>
"#
    )
}

pub(crate) fn label(id: &str) -> String {
    format!("  <label id=\"{id}\"/>\n")
}

pub(crate) fn pause(ms: u32) -> String {
    format!("  <pause milliseconds=\"{ms}\"/>\n")
}

/// Plays a pcap's RTP (a path under the SIPp run's folder).
pub(crate) fn play_pcap(path: &str) -> String {
    format!("  <nop><action><exec play_pcap_audio=\"{path}\"/></action></nop>\n")
}

/// A scenario of `steps`, `name` on SIPp's screen.
pub(crate) fn scenario(name: &str, steps: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">\n{}</scenario>\n",
        steps.concat()
    )
}

/// What a far end sends before its final answer to an INVITE.
#[derive(Clone, Copy)]
pub(crate) enum Provisional<'a> {
    /// 180, without a Contact.
    Ringing,
    /// 180 with a Contact.
    RingingWithContact,
    /// 183 with SDP: early media.
    EarlyMedia(Sdp<'a>),
}

/// A far end's final answer to an INVITE, and what follows.
pub(crate) enum Final<'a> {
    /// Refused with `status` ("486 Busy Here") and a header line (a
    /// challenge) or "", then the ACK.
    Refused(&'a str, &'a str),
    /// Rings until the CANCEL: 200 to it, 487 to the INVITE, the ACK.
    Cancelled,
    /// 200 with `sdp`, the ACK, then `then` (steps: a pcap played, say)
    /// and the hang-up.
    Answered {
        sdp: Sdp<'a>,
        then: &'a str,
        hangs_up: HangsUp,
    },
}

/// Who ends an answered call.
pub(crate) enum HangsUp {
    /// The caller's BYE, answered 200.
    Caller,
    /// The far end's BYE to `server` `after_ms` ms after the ACK (To has
    /// the tag from the ACK's From), and the 200.
    FarEnd { after_ms: u32, server: SocketAddr },
}

/// A far end taking one INVITE: `provisional` responses, `pause_ms` (if
/// not 0), then `last`; `name` on SIPp's screen.
pub(crate) fn uas_scenario(
    name: &str,
    provisional: &[Provisional],
    pause_ms: u32,
    last: Final,
) -> String {
    scenario(
        name,
        &[
            recv_first("INVITE"),
            uas_steps(1, provisional, pause_ms, last),
        ],
    )
}

/// `uas_scenario`'s steps after the INVITE, in SIPp's dialog `tag`.
pub(crate) fn uas_steps(
    tag: u8,
    provisional: &[Provisional],
    pause_ms: u32,
    last: Final,
) -> String {
    let mut out = String::new();
    for p in provisional {
        let reply = match p {
            Provisional::Ringing => Reply::new("180 Ringing", tag),
            Provisional::RingingWithContact => Reply::new("180 Ringing", tag).contact(),
            Provisional::EarlyMedia(sdp) => {
                Reply::new("183 Session Progress", tag).contact().sdp(*sdp)
            }
        };
        out.push_str(&reply.to_string());
    }
    if pause_ms > 0 {
        out.push_str(&pause(pause_ms));
    }
    match last {
        Final::Refused(status, header) => {
            let mut reply = Reply::new(status, tag);
            if !header.is_empty() {
                reply = reply.header(header);
            }
            out.push_str(&reply.to_string());
            out.push_str(&recv("ACK"));
        }
        Final::Cancelled => {
            out.push_str(&recv("CANCEL"));
            out.push_str(&Reply::new("200 OK", tag).to_string());
            let terminated =
                Reply::new("487 Request Terminated", tag).cseq("CSeq: [last_cseq_number] INVITE");
            out.push_str(&terminated.to_string());
            out.push_str(&recv("ACK"));
        }
        Final::Answered {
            sdp,
            then,
            hangs_up,
        } => {
            out.push_str(
                &Reply::new("200 OK", tag)
                    .retrans()
                    .contact()
                    .sdp(sdp)
                    .to_string(),
            );
            match hangs_up {
                HangsUp::Caller => {
                    out.push_str(&recv("ACK"));
                    out.push_str(then);
                    out.push_str(&recv("BYE"));
                    out.push_str(&Reply::in_dialog("200 OK").to_string());
                }
                HangsUp::FarEnd { after_ms, server } => {
                    out.push_str(&format!(
                        r#"  <recv request="ACK">
    <action>
      <ereg regexp="tag=([^;> ]+)" search_in="hdr" header="From:" assign_to="all,ours"/>
    </action>
  </recv>
{then}{pause}  <send retrans="500"><![CDATA[
BYE sip:switchboard@{server} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:far@[local_ip]:[local_port]>;tag=[pid]SIPpTag0{tag}[call_number]
To: <sip:switchboard@{server}>;tag=[$ours]
[last_Call-ID:]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <Reference variables="all"/>
"#,
                        pause = pause(after_ms),
                    ));
                }
            }
        }
    }
    out
}

/// The far end of a forwarded or transferred call: 183 with SDP (early
/// media), 200 a second later, then the caller's BYE. Run with
/// `-rtp_echo`: what it hears goes back.
pub(crate) fn early_media_then_answer() -> String {
    let sdp = |origin| Sdp {
        origin,
        media: PCMA_DTMF,
    };
    uas_scenario(
        "far end with early media",
        &[Provisional::EarlyMedia(sdp("far 1 1"))],
        1000,
        Final::Answered {
            sdp: sdp("far 1 2"),
            then: "",
            hangs_up: HangsUp::Caller,
        },
    )
}
