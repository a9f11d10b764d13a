//! H.264/H.265 NAL helpers (ITU-T H.264 §7.3, H.265 §7.3) and the SPS fields a sample
//! entry needs. Pure.

/// H.264 NAL unit type (low 5 bits of the header byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// H.265 NAL unit type (bits 1..7 of the first header byte).
pub fn hevc_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// Appends `nal` with a 4-byte length prefix.
pub fn push_length_prefixed(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    out.extend_from_slice(nal);
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
pub fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An Exp-Golomb bit reader.
struct Bits<'a> {
    b: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.b.get(self.at / 8)?;
        let v = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let v = self.ue()?;
        Some(if v % 2 == 1 { v.div_ceil(2) as i32 } else { -((v / 2) as i32) })
    }
}

/// What a sample entry needs from an H.264 SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraints: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
    /// 2 means output order is decode order: no B-frames, nothing to reorder.
    pub pic_order_cnt_type: u32,
}

/// Parses an H.264 SPS NAL unit (with its header byte) far enough to know the picture
/// size; `None` if it is not one or is malformed.
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal_type(nal) != 7 || nal.len() < 4 {
        return None;
    }
    let rbsp = unescape(&nal[1..]);
    let [profile_idc, constraints, level_idc, ..] = rbsp[..] else { return None };
    let mut r = Bits { b: &rbsp[3..], at: 0 };
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let pic_order_cnt_type = r.ue()?;
    match pic_order_cnt_type {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        crop_l = r.ue()?;
        crop_r = r.ue()?;
        crop_t = r.ue()?;
        crop_b = r.ue()?;
    }
    let (sub_w, sub_h) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let frame_h_mult = 2 - frame_mbs_only;
    let width = (width_mbs * 16).checked_sub(sub_w * (crop_l + crop_r))?;
    let height = (height_map_units * 16 * frame_h_mult).checked_sub(sub_h * frame_h_mult * (crop_t + crop_b))?;
    Some(SpsInfo { profile_idc, constraints, level_idc, width, height, pic_order_cnt_type })
}

/// Width and height from an H.265 SPS (H.265 §7.3.2.2), `None` if malformed.
pub fn parse_hevc_sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    if hevc_nal_type(nal) != 33 || nal.len() < 3 {
        return None;
    }
    let rbsp = unescape(&nal[2..]);
    let mut r = Bits { b: &rbsp, at: 0 };
    r.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    r.bit()?; // temporal_id_nesting
              // profile_tier_level(1, max_sub_layers_minus1)
    r.bits(8)?;
    r.bits(32)?;
    r.bits(32)?;
    r.bits(16)?;
    r.bits(8)?; // general_level_idc
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((r.bit()?, r.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.bits(2)?;
        }
    }
    for (profile, level) in present {
        if profile == 1 {
            r.bits(32)?;
            r.bits(32)?;
            r.bits(24)?;
        }
        if level == 1 {
            r.bits(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    if chroma == 3 {
        r.bit()?;
    }
    let mut w = r.ue()?;
    let mut h = r.ue()?;
    if r.bit()? == 1 {
        let (sub_w, sub_h) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (l, rr, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        w = w.checked_sub(sub_w * (l + rr))?;
        h = h.checked_sub(sub_h * (t + b))?;
    }
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sps_of_a_640x360_x264_stream() {
        // x264 High profile 640x360 (from `ffmpeg -f lavfi -i testsrc2=size=640x360 -c:v libx264`).
        let sps = [
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00,
            0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
        ];
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.profile_idc, info.level_idc, info.width, info.height), (100, 30, 640, 360));
        assert_eq!(info.pic_order_cnt_type, 0);
        assert_eq!(parse_sps(&sps[..5]), None);
        assert_eq!(parse_sps(&[0x68, 1, 2, 3]), None);
        // x264 without B-frames (-bf 0 -tune zerolatency) signals output order = decode order.
        let no_b = [
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xb2, 0x01, 0x40, 0x5f, 0xf2, 0xe0, 0x22, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00,
            0x00, 0x03, 0x00, 0x65, 0x1e, 0x2c, 0x5c, 0x90,
        ];
        let info = parse_sps(&no_b).unwrap();
        assert_eq!((info.width, info.height, info.pic_order_cnt_type), (640, 360, 2));
        // Found by the rtsp_wire fuzz target: emulation prevention leaves too few bytes.
        assert_eq!(parse_sps(&[0x67, 0, 0, 3]), None);
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }
}
