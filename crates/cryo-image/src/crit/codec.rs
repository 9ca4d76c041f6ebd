//! The value renderings of crit's `pb2dict.py`: base64 as `base64.encodebytes` writes it (lines
//! of 76 characters, each ending in `\n`), quoted-printable for `(criu).conv = "unix_name"`,
//! the flag tables of `(criu).flags`, the maps of `(criu).dict`, `(criu).dev`/`odev` device
//! numbers and `(criu).ipadd` addresses.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `base64.encodebytes(data).decode()`: a newline after every 76 characters and at the end
/// ("" for no data).
pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for line in data.chunks(57) {
        for c in line.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            let idx = |shift: u32| char::from(B64[((n >> shift) & 63) as usize]);
            out.push(idx(18));
            out.push(idx(12));
            out.push(if c.len() > 1 { idx(6) } else { '=' });
            out.push(if c.len() > 2 { idx(0) } else { '=' });
        }
        out.push('\n');
    }
    out
}

/// `base64.decodebytes`: characters outside the alphabet (newlines) are skipped, decoding
/// stops at padding.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padded = false;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padded = true;
                continue;
            }
            _ => continue,
        };
        if padded {
            return Err("base64 data after padding".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits == 6 {
        return Err("truncated base64 data".into());
    }
    Ok(out)
}

/// `quopri.encodestring(data)` (binascii's `b2a_qp`, `quotetabs=False`): printable ASCII as is,
/// `=XX` for `=`, control and non-ASCII bytes and a space or tab before a line end, soft line
/// breaks (`=\n`) keeping lines within 76 characters.
pub fn qp_encode(data: &[u8]) -> String {
    const MAXLINE: usize = 76;
    let mut out = String::new();
    let mut linelen = 0;
    let hex = b"0123456789ABCDEF";
    for (i, &c) in data.iter().enumerate() {
        if c == b'\n' {
            out.push('\n');
            linelen = 0;
            continue;
        }
        let next = data.get(i + 1);
        let at_eol = next.is_none() || next == Some(&b'\n');
        let encode = c == b'='
            || c > 126
            || (c < 32 && c != b'\t' && c != b'\r')
            || ((c == b' ' || c == b'\t') && at_eol)
            || (c == b'.' && linelen == 0 && at_eol);
        let width = if encode { 3 } else { 1 };
        if linelen + width >= MAXLINE && !(at_eol && linelen + width == MAXLINE) {
            out.push_str("=\n");
            linelen = 0;
        }
        if encode {
            out.push('=');
            out.push(char::from(hex[usize::from(c >> 4)]));
            out.push(char::from(hex[usize::from(c & 15)]));
        } else {
            out.push(char::from(c));
        }
        linelen += width;
    }
    out
}

/// `quopri.decodestring`: `=XX` is a byte, `=` before a line end a soft break.
pub fn qp_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if b.get(i + 1..i + 3) == Some(b"\r\n") {
                i += 3;
                continue;
            }
            if let Some(h) = b.get(i + 1..i + 3) {
                if let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("x"), 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The flag tables of `pb2dict.py` (`flags_maps`), by `(criu).flags` name.
pub fn flags_map(name: &str) -> Option<&'static [(&'static str, u64)]> {
    const MMAP_PROT: &[(&str, u64)] = &[("PROT_READ", 1), ("PROT_WRITE", 2), ("PROT_EXEC", 4)];
    const MMAP_FLAGS: &[(&str, u64)] = &[
        ("MAP_SHARED", 0x1),
        ("MAP_PRIVATE", 0x2),
        ("MAP_DROPPABLE", 0x08),
        ("MAP_ANON", 0x20),
        ("MAP_GROWSDOWN", 0x0100),
    ];
    const MMAP_STATUS: &[(&str, u64)] = &[
        ("VMA_AREA_NONE", 0),
        ("VMA_AREA_REGULAR", 1),
        ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2),
        ("VMA_AREA_VDSO", 1 << 3),
        ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6),
        ("VMA_FILE_SHARED", 1 << 7),
        ("VMA_ANON_SHARED", 1 << 8),
        ("VMA_ANON_PRIVATE", 1 << 9),
        ("VMA_AREA_SYSVIPC", 1 << 10),
        ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12),
        ("VMA_AREA_AIORING", 1 << 13),
        ("VMA_AREA_MEMFD", 1 << 14),
        ("VMA_AREA_SHSTK", 1 << 15),
        ("VMA_AREA_UPROBES", 1 << 17),
        ("VMA_UNSUPP", 1 << 31),
    ];
    const RFILE_FLAGS: &[(&str, u64)] = &[
        ("O_WRONLY", 0o1),
        ("O_RDWR", 0o2),
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
        ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000),
        ("O_DSYNC", 0o10000),
        ("FASYNC", 0o20000),
        ("O_DIRECT", 0o40000),
        ("O_LARGEFILE", 0o100000),
        ("O_DIRECTORY", 0o200000),
        ("O_NOFOLLOW", 0o400000),
        ("O_NOATIME", 0o1000000),
        ("O_CLOEXEC", 0o2000000),
    ];
    const SEALS: &[(&str, u64)] = &[
        ("F_SEAL_SEAL", 1),
        ("F_SEAL_SHRINK", 2),
        ("F_SEAL_GROW", 4),
        ("F_SEAL_WRITE", 8),
        ("F_SEAL_FUTURE_WRITE", 0x10),
    ];
    const PMAP: &[(&str, u64)] = &[("PE_PARENT", 1), ("PE_LAZY", 2), ("PE_PRESENT", 4)];
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP,
        "seals.flags" => SEALS,
        _ => return None,
    })
}

/// `map_flags`: names of the set flags, then the rest in hex, joined by `" | "`.
pub fn map_flags(value: u64, map: &[(&str, u64)]) -> String {
    let mut parts: Vec<String> = map
        .iter()
        .filter(|(_, bit)| value & bit != 0)
        .map(|(n, _)| (*n).to_string())
        .collect();
    let rest = value & !map.iter().fold(0, |a, (_, b)| a | b);
    if rest != 0 {
        parts.push(format!("0x{rest:x}"));
    }
    parts.join(" | ")
}

/// `unmap_flags`: the sum of the named flags and numbers.
pub fn unmap_flags(text: &str, map: &[(&str, u64)]) -> Result<i128, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let mut sum = 0i128;
    for part in text.split('|').map(str::trim) {
        let v = match map.iter().find(|(n, _)| *n == part) {
            Some((_, v)) => i128::from(*v),
            None => parse_int(part)?,
        };
        // Numbers in the text can be as large as i128: their sum must not overflow (the
        // field's range is checked by the caller).
        sum = sum
            .checked_add(v)
            .ok_or_else(|| format!("flags value out of range: '{text}'"))?;
    }
    Ok(sum)
}

/// `int(text, 0)`: decimal, `0x`, `0o` or `0b`, with a sign and `_` separators.
pub fn parse_int(text: &str) -> Result<i128, String> {
    let bad = || format!("invalid literal for int() with base 0: '{text}'");
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r)
    } else {
        if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') {
            return Err(bad());
        }
        (10, lower.as_str())
    };
    let digits: String = digits.strip_prefix('_').unwrap_or(digits).replace('_', "");
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(bad());
    }
    let v = i128::from_str_radix(&digits, radix).map_err(|_| bad())?;
    Ok(if neg { -v } else { v })
}

/// The `(criu).dict` maps: `(dict, field name)` to `(number, name)` pairs.
pub fn dict_map(dict: &str, field: &str) -> Option<&'static [(i64, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (3, "Zombie"), (6, "Stopped")],
        ("sk", "family") => &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

/// `decode_dev`: `"major:minor"`, the kernel's encoding (20 minor bits) or with `odev` glibc's.
pub fn decode_dev(value: u64, odev: bool) -> String {
    if odev {
        let major = ((value >> 8) & 0xfff) | ((value >> 32) & !0xfff);
        let minor = (value & 0xff) | ((value >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!("{}:{}", value >> 20, value & ((1 << 20) - 1))
    }
}

/// `encode_dev`, the inverse of [`decode_dev`].
pub fn encode_dev(text: &str, odev: bool) -> Result<i128, String> {
    let (ma, mi) = text
        .split_once(':')
        .ok_or_else(|| format!("bad device number '{text}'"))?;
    let ma = parse_int(ma)?;
    let mi = parse_int(mi)?;
    Ok(if odev {
        ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12)
    } else {
        (ma << 20) | mi
    })
}

/// The pretty `(criu).ipadd` rendering: one word is IPv4, otherwise the first four are IPv6,
/// each word in network byte order as the kernel stores it; IPv6 written the way Python 3.11's
/// `IPv6Address.compressed` does (longest run of two or more zero groups as `::`, hex groups).
pub fn ip_to_string(words: &[u32]) -> Option<String> {
    match words.len() {
        1 => Some(std::net::Ipv4Addr::from(u32::from_be(words[0])).to_string()),
        n if n >= 4 => {
            let mut groups = [0u16; 8];
            for (i, w) in words[..4].iter().enumerate() {
                let v = u32::from_be(*w);
                groups[2 * i] = (v >> 16) as u16;
                groups[2 * i + 1] = v as u16;
            }
            let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
            for (i, g) in groups.iter().enumerate() {
                if *g == 0 {
                    if cur_len == 0 {
                        cur = i;
                    }
                    cur_len += 1;
                    if cur_len > best_len {
                        best = cur;
                        best_len = cur_len;
                    }
                } else {
                    cur_len = 0;
                }
            }
            let hex = |gs: &[u16]| {
                gs.iter()
                    .map(|g| format!("{g:x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            };
            Some(if best_len > 1 {
                format!(
                    "{}::{}",
                    hex(&groups[..best]),
                    hex(&groups[best + best_len..])
                )
            } else {
                hex(&groups)
            })
        }
        _ => None,
    }
}

/// The inverse of [`ip_to_string`]: the words of an IPv4 or IPv6 address.
pub fn ip_from_string(text: &str) -> Result<Vec<u32>, String> {
    let addr: std::net::IpAddr = text
        .parse()
        .map_err(|_| format!("'{text}' does not appear to be an IPv4 or IPv6 address"))?;
    Ok(match addr {
        std::net::IpAddr::V4(a) => vec![u32::from(a).to_be()],
        std::net::IpAddr::V6(a) => {
            let v = u128::from(a);
            (0..4)
                .map(|i| ((v >> (32 * (3 - i))) as u32).to_be())
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_python() {
        assert_eq!(b64_encode(b""), "");
        assert_eq!(b64_encode(b"ab"), "YWI=\n");
        let long = vec![7u8; 60];
        let enc = b64_encode(&long);
        assert_eq!(enc.lines().next().map(str::len), Some(76));
        assert_eq!(b64_decode(&enc).unwrap(), long);
        assert!(b64_decode("YW").is_err() || b64_decode("YW").is_ok());
    }

    #[test]
    fn flags_and_ints() {
        let m = flags_map("mmap.prot").unwrap();
        assert_eq!(map_flags(3, m), "PROT_READ | PROT_WRITE");
        assert_eq!(map_flags(0x13, m), "PROT_READ | PROT_WRITE | 0x10");
        assert_eq!(map_flags(0, m), "");
        assert_eq!(
            unmap_flags("PROT_READ | PROT_WRITE | 0x10", m).unwrap(),
            0x13
        );
        let max = format!("PROT_READ | {}", i128::MAX);
        assert!(unmap_flags(&max, m).is_err());
        assert_eq!(parse_int("0x1f").unwrap(), 31);
        assert_eq!(parse_int("-12").unwrap(), -12);
        assert!(parse_int("012").is_err());
    }

    #[test]
    fn dev_and_ip() {
        assert_eq!(decode_dev((8 << 20) | 3, false), "8:3");
        assert_eq!(encode_dev("8:3", false).unwrap(), (8 << 20) | 3);
        assert_eq!(decode_dev(0x803, true), "8:3");
        assert_eq!(encode_dev("8:3", true).unwrap(), 0x803);
        let w = ip_from_string("127.0.0.1").unwrap();
        assert_eq!(ip_to_string(&w).unwrap(), "127.0.0.1");
        let w = ip_from_string("fe80::1").unwrap();
        assert_eq!(ip_to_string(&w).unwrap(), "fe80::1");
        let w = ip_from_string("::ffff:1.2.3.4").unwrap();
        assert_eq!(ip_to_string(&w).unwrap(), "::ffff:102:304");
    }

    #[test]
    fn quoted_printable() {
        let data = b"\0abc=def \n";
        assert_eq!(qp_decode(&qp_encode(data)), data);
        assert_eq!(qp_encode(b"\0sock"), "=00sock");
    }
}
