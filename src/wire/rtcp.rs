//! RTCP sender reports (RFC 3550 §6.4.1) out of a compound packet: the NTP wall-clock
//! time a source says matches one of its RTP timestamps. Pure.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// NTP timestamp: seconds since 1900 in the high 32 bits, the fraction in the low.
    pub ntp: u64,
    pub rtp_timestamp: u32,
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// An NTP timestamp as µs since the Unix epoch (`None` before 1970).
pub fn ntp_to_unix_us(ntp: u64) -> Option<i64> {
    let secs = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_S)?;
    let frac_us = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
    i64::try_from(secs * 1_000_000 + frac_us).ok()
}

/// The sender reports in a compound RTCP packet; stops at the first malformed packet.
pub fn sender_reports(mut b: &[u8]) -> Vec<SenderReport> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        if b[0] >> 6 != 2 {
            break;
        }
        let len = (usize::from(u16::from_be_bytes([b[2], b[3]])) + 1) * 4;
        let Some(pkt) = b.get(..len) else { break };
        if pkt[1] == 200 && pkt.len() >= 28 {
            let u32_at = |i: usize| u32::from_be_bytes([pkt[i], pkt[i + 1], pkt[i + 2], pkt[i + 3]]);
            out.push(SenderReport {
                ssrc: u32_at(4),
                ntp: (u64::from(u32_at(8)) << 32) | u64::from(u32_at(12)),
                rtp_timestamp: u32_at(16),
            });
        }
        b = &b[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_report_in_a_compound_packet() {
        // SR (ssrc 0x11223344, NTP 3913056000.5 s = 2024-01-01T00:00:00.5Z, RTP 90000) + SDES.
        let mut p = vec![0x80, 200, 0, 6, 0x11, 0x22, 0x33, 0x44];
        p.extend_from_slice(&3_913_056_000u32.to_be_bytes());
        p.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        p.extend_from_slice(&90_000u32.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 0]);
        let srs = sender_reports(&p);
        assert_eq!(srs.len(), 1);
        assert_eq!((srs[0].ssrc, srs[0].rtp_timestamp), (0x1122_3344, 90_000));
        assert_eq!(ntp_to_unix_us(srs[0].ntp), Some(1_704_067_200_500_000));
        assert!(sender_reports(&p[..20]).is_empty());
        assert!(sender_reports(&[0x40, 200, 0, 0]).is_empty());
        assert_eq!(ntp_to_unix_us(5 << 32), None);
    }
}
