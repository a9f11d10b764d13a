//! ICE candidates as a remote peer gives them, on arbitrary text: in a description
//! (capped and screened) and trickled one by one, with address ranges and the
//! public-candidate rewriting beside. No panic; never more candidates kept than the cap.
#![no_main]

use kinescope::webrtc::peer::{CandidateScreen, Network, RTCIceCandidateInit, MAX_REMOTE_CANDIDATES};
use kinescope::wire::sdp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lan = Network { peer_networks: vec!["10.0.0.0/8".parse().expect("a range")], ..Network::default() };
    for network in [Network::default(), lan] {
        let mut screen = CandidateScreen::new(&network);
        let kept = screen.description(&text);
        // Candidate lines as an SDP parser reads them (a line led by CRs included).
        assert!(sdp::candidate_lines(&kept) <= MAX_REMOTE_CANDIDATES);
        for line in text.lines().take(64) {
            let _ = screen.candidate(&RTCIceCandidateInit { candidate: line.to_string(), ..Default::default() });
        }
    }
    let (_, dropped) = sdp::keep_candidates(&text, 3, |a| a.len() < 40);
    assert!(dropped <= sdp::candidate_lines(&text));
    for line in text.lines().take(64) {
        let _ = sdp::candidate_address(line);
        let _ = line.parse::<kinescope::egress::Cidr>();
    }
});
