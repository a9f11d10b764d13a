//! MPEG-2 transport stream writing (ISO/IEC 13818-1), as HLS segments use it: a PAT and
//! a PMT, then each access unit as one PES packet cut into 188-byte packets, the PCR on
//! the first packet of every PES of the PCR stream, continuity counters per PID.
//!
//! Knows no codec: the caller gives each elementary stream its `stream_type` and hands
//! over access units already in their transport form (Annex B, ADTS). Pure; writes
//! into a `Vec`.

/// The size of every transport packet.
pub const PACKET: usize = 188;
/// Where the PMT is carried (the PAT names it).
pub const PMT_PID: u16 = 0x1000;
/// The first elementary stream's PID; the next ones follow.
pub const FIRST_ES_PID: u16 = 0x100;
/// How far the PCR runs ahead of the decode times it accompanies (90 kHz ticks): 100 ms,
/// so a decoder's buffer has the access unit before it is due.
pub const PCR_LEAD: u64 = 9_000;
/// Timestamps are 33 bits of 90 kHz ticks.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// One elementary stream of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsInfo {
    /// The PMT's stream_type (0x1B H.264, 0x24 H.265, 0x0F AAC in ADTS, …).
    pub stream_type: u8,
    /// Video streams get PES stream id 0xE0.., audio 0xC0...
    pub video: bool,
}

/// One access unit to write.
#[derive(Debug, Clone, Copy)]
pub struct AccessUnit<'a> {
    /// Index into the streams the writer was made with.
    pub stream: usize,
    /// Presentation and decode times, 90 kHz (taken modulo 2^33).
    pub pts: u64,
    pub dts: u64,
    /// A random access point (a keyframe): flagged in the adaptation field.
    pub random_access: bool,
    pub data: &'a [u8],
}

/// Writes one program's transport stream.
#[derive(Debug, Clone)]
pub struct TsWriter {
    streams: Vec<EsInfo>,
    /// The stream that carries the PCR: the first video stream, else the first.
    pcr_stream: usize,
    /// Continuity counters: PAT, PMT, then one per stream.
    counters: Vec<u8>,
}

impl TsWriter {
    pub fn new(streams: Vec<EsInfo>) -> Self {
        let pcr_stream = streams.iter().position(|s| s.video).unwrap_or(0);
        let counters = vec![0; streams.len() + 2];
        TsWriter { streams, pcr_stream, counters }
    }

    fn pid(index: usize) -> u16 {
        FIRST_ES_PID + index as u16
    }

    /// The PAT and the PMT, each in one packet (a segment starts with them).
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        // PAT: program 1 on PMT_PID.
        let mut pat = vec![0x00, 0x01, 0xC1, 0x00, 0x00];
        pat.extend_from_slice(&1u16.to_be_bytes());
        pat.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        self.write_section(out, 0, 0x0000, 0x00, &pat);
        // PMT: the PCR PID, no program info, then each stream.
        let mut pmt = vec![0x00, 0x01, 0xC1, 0x00, 0x00];
        pmt.extend_from_slice(&(0xE000 | Self::pid(self.pcr_stream)).to_be_bytes());
        pmt.extend_from_slice(&0xF000u16.to_be_bytes());
        for (i, s) in self.streams.iter().enumerate() {
            pmt.push(s.stream_type);
            pmt.extend_from_slice(&(0xE000 | Self::pid(i)).to_be_bytes());
            pmt.extend_from_slice(&0xF000u16.to_be_bytes());
        }
        self.write_section(out, 1, PMT_PID, 0x02, &pmt);
    }

    /// A PSI section (table id, then `body` after the section length) in one packet,
    /// with its CRC; `body` starts with the table id extension.
    fn write_section(&mut self, out: &mut Vec<u8>, counter: usize, pid: u16, table_id: u8, body: &[u8]) {
        let mut section = vec![table_id];
        let length = body.len() + 4; // + CRC
        section.extend_from_slice(&(0xB000 | length as u16).to_be_bytes());
        section.extend_from_slice(body);
        let crc = crc32_mpeg(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let start = out.len();
        out.extend_from_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | self.next_counter(counter), 0x00]);
        out.extend_from_slice(&section);
        out.resize(start + PACKET, 0xFF);
    }

    fn next_counter(&mut self, index: usize) -> u8 {
        let c = self.counters[index];
        self.counters[index] = (c + 1) & 0x0F;
        c
    }

    /// One access unit as a PES packet.
    pub fn write_access_unit(&mut self, out: &mut Vec<u8>, au: &AccessUnit<'_>) {
        let Some(info) = self.streams.get(au.stream).copied() else { return };
        let pid = Self::pid(au.stream);
        let (pts, dts) = (au.pts & TIMESTAMP_MASK, au.dts & TIMESTAMP_MASK);
        let mut pes = Vec::with_capacity(19);
        pes.extend_from_slice(&[0x00, 0x00, 0x01, if info.video { 0xE0 } else { 0xC0 } + au.stream as u8]);
        let with_dts = pts != dts;
        let header_len = if with_dts { 10 } else { 5 };
        let total = 3 + header_len + au.data.len();
        // Video PES may be unbounded (length 0); audio must fit.
        let length = if total > 0xFFFF { 0 } else { total as u16 };
        pes.extend_from_slice(&length.to_be_bytes());
        pes.push(0x80 | if au.random_access { 0x04 } else { 0 }); // marker bits, data_alignment on keyframes
        pes.push(if with_dts { 0xC0 } else { 0x80 });
        pes.push(header_len as u8);
        write_timestamp(&mut pes, if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            write_timestamp(&mut pes, 0x1, dts);
        }
        let pcr = (au.stream == self.pcr_stream).then(|| dts.wrapping_sub(PCR_LEAD) & TIMESTAMP_MASK);
        let mut first = true;
        let mut head: &[u8] = &pes;
        let mut body = au.data;
        loop {
            // The payload of a packet comes from the PES header, then the data.
            let mut adaptation = Vec::new();
            if first && (pcr.is_some() || au.random_access) {
                let mut flags = 0u8;
                if au.random_access {
                    flags |= 0x40;
                }
                if pcr.is_some() {
                    flags |= 0x10;
                }
                adaptation.push(flags);
                if let Some(base) = pcr {
                    adaptation.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base & 1) << 7) as u8 | 0x7E,
                        0x00,
                    ]);
                }
            }
            let room = PACKET - 4 - if adaptation.is_empty() { 0 } else { 1 + adaptation.len() };
            let available = head.len() + body.len();
            let counter = self.next_counter(au.stream + 2);
            let start = out.len();
            let pusi = if first { 0x40 } else { 0 };
            if available >= room {
                let control = if adaptation.is_empty() { 0x10 } else { 0x30 };
                out.extend_from_slice(&[0x47, pusi | (pid >> 8) as u8, pid as u8, control | counter]);
                if !adaptation.is_empty() {
                    out.push(adaptation.len() as u8);
                    out.extend_from_slice(&adaptation);
                }
            } else {
                // The last packet: stuffing in the adaptation field fills it.
                let stuffing = room - available;
                out.extend_from_slice(&[0x47, pusi | (pid >> 8) as u8, pid as u8, 0x30 | counter]);
                let (field_len, extra) = if adaptation.is_empty() {
                    // A 1-byte adaptation field is just its length (0); 2+ bytes carry flags.
                    (stuffing.saturating_sub(1), stuffing.saturating_sub(2))
                } else {
                    (adaptation.len() + stuffing, stuffing)
                };
                out.push(field_len as u8);
                if adaptation.is_empty() {
                    if stuffing >= 2 {
                        out.push(0x00);
                    }
                } else {
                    out.extend_from_slice(&adaptation);
                }
                out.resize(out.len() + extra, 0xFF);
            }
            let mut take = PACKET - (out.len() - start);
            for part in [&mut head, &mut body] {
                let n = take.min(part.len());
                out.extend_from_slice(&part[..n]);
                *part = &part[n..];
                take -= n;
            }
            first = false;
            if head.is_empty() && body.is_empty() {
                break;
            }
        }
    }
}

/// A PES timestamp: 4-bit prefix, then 33 bits with marker bits (5 bytes).
fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    out.push((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.extend_from_slice(&((((ts >> 15) & 0x7FFF) << 1 | 1) as u16).to_be_bytes());
    out.extend_from_slice(&((((ts & 0x7FFF) << 1) | 1) as u16).to_be_bytes());
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, no reflection, initial all ones).
pub fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pid, payload_unit_start, counter, payload) of each packet.
    fn packets(ts: &[u8]) -> Vec<(u16, bool, u8, Vec<u8>)> {
        assert_eq!(ts.len() % PACKET, 0);
        ts.chunks(PACKET)
            .map(|p| {
                assert_eq!(p[0], 0x47);
                let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
                let control = (p[3] >> 4) & 0x3;
                let start = if control & 0x2 != 0 { 5 + p[4] as usize } else { 4 };
                (pid, p[1] & 0x40 != 0, p[3] & 0x0F, p[start..].to_vec())
            })
            .collect()
    }

    #[test]
    fn the_crc_is_mpeg2s() {
        // The check value of CRC-32/MPEG-2 over "123456789".
        assert_eq!(crc32_mpeg(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn access_units_of_any_size_fill_whole_packets_and_read_back() {
        for size in [0usize, 1, 150, 168, 169, 170, 171, 176, 183, 184, 185, 1000, 70_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut w = TsWriter::new(vec![
                EsInfo { stream_type: 0x1B, video: true },
                EsInfo { stream_type: 0x0F, video: false },
            ]);
            let mut out = Vec::new();
            w.write_tables(&mut out);
            for stream in [0, 1, 0] {
                let au = AccessUnit { stream, pts: 1_800_000, dts: 1_790_000, random_access: true, data: &data };
                w.write_access_unit(&mut out, &au);
            }
            let pk = packets(&out);
            assert_eq!((pk[0].0, pk[1].0), (0, PMT_PID));
            // Each PES reassembled: header (9 + 10 bytes) then the data, as given.
            for pid in [FIRST_ES_PID, FIRST_ES_PID + 1] {
                let mine: Vec<_> = pk.iter().filter(|p| p.0 == pid).collect();
                let counters: Vec<u8> = mine.iter().map(|p| p.2).collect();
                assert!(counters.iter().enumerate().all(|(i, c)| *c == (i as u8) & 0xF), "{counters:?}");
                let mut pes: Vec<Vec<u8>> = Vec::new();
                for p in mine {
                    if p.1 {
                        pes.push(Vec::new());
                    }
                    pes.last_mut().unwrap().extend_from_slice(&p.3);
                }
                for one in &pes {
                    assert_eq!(&one[..3], &[0, 0, 1], "size {size}");
                    assert_eq!(one[8], 10, "PTS and DTS");
                    assert_eq!(&one[19..], &data[..], "size {size}");
                }
            }
        }
    }

    #[test]
    fn timestamps_and_the_pcr_encode_as_the_standard_lays_them_out() {
        let mut w = TsWriter::new(vec![EsInfo { stream_type: 0x1B, video: true }]);
        let mut out = Vec::new();
        let ts = (1u64 << 33) + 123_456_789; // wraps to 33 bits
        w.write_access_unit(&mut out, &AccessUnit { stream: 0, pts: ts, dts: ts, random_access: true, data: b"x" });
        // Adaptation field: length, flags (random access + PCR), 6 PCR bytes.
        assert_eq!(out[5], 0x50);
        let b = &out[6..12];
        let base = u64::from(b[0]) << 25
            | u64::from(b[1]) << 17
            | u64::from(b[2]) << 9
            | u64::from(b[3]) << 1
            | u64::from(b[4] >> 7);
        assert_eq!(base, 123_456_789 - PCR_LEAD);
        // PES: PTS only (PTS == DTS).
        let pes = &out[PACKET - 15..];
        assert_eq!(&pes[..4], &[0, 0, 1, 0xE0]);
        assert_eq!(pes[7], 0x80);
        let t = &pes[9..14];
        let read = (u64::from(t[0] >> 1) & 7) << 30
            | (u64::from(u16::from_be_bytes([t[1], t[2]]) >> 1)) << 15
            | u64::from(u16::from_be_bytes([t[3], t[4]]) >> 1);
        assert_eq!(read, 123_456_789);
        assert_eq!(pes[14], b'x');
    }
}
