//! A JSON number's text to the nearest `f64` (ties to even), as `str::parse` gives it, but
//! without std's table of 651 powers of five: that table alone is a sixteenth of the
//! compressed wasm. A short significand with a small power of ten takes one exact rounding;
//! one of up to 19 digits with a power up to 10^±19 is divided exactly in 128 bits; the rest
//! (longer, or far from 1) is divided exactly with big integers, slower but rare.

use std::cmp::Ordering;

/// Significant digits kept. A point halfway between two doubles has at most 767, so the
/// digits after these only tell that the value is above a halfway point it seems to be on.
const MAX_DIGITS: usize = 800;

/// 10^0 ..= 10^22, all exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value of `text`, a JSON number (already checked to be one), or `None` when it is too
/// large for an `f64`. Too small rounds to zero, as `str::parse` does.
pub fn parse(text: &str) -> Option<f64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], exponent_of(&text[i + 1..])),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The significant digits: no leading zeros, no trailing ones (they go to the exponent).
    let all = || int.bytes().chain(frac.bytes());
    let leading = all().take_while(|b| *b == b'0').count();
    let trailing = all().rev().take_while(|b| *b == b'0').count();
    let total = int.len() + frac.len();
    let sign = if negative { -1.0 } else { 1.0 };
    if leading == total {
        return Some(sign * 0.0);
    }
    let mut digits: Vec<u8> = all()
        .skip(leading)
        .take(total - leading - trailing)
        .collect();
    let mut exp10 = exponent - frac.len() as i64 + trailing as i64;
    // Digits past the first MAX_DIGITS cannot decide the rounding, only that the value is
    // above what the first ones say (the last digit is not 0); the big integers stay small.
    let above = digits.len() > MAX_DIGITS;
    if above {
        exp10 += (digits.len() - MAX_DIGITS) as i64;
        digits.truncate(MAX_DIGITS);
    }
    // The value is below 10^(digits + exp10) and at least a tenth of it.
    let magnitude = digits.len() as i64 + exp10;
    if magnitude > 310 {
        return None;
    }
    if magnitude < -324 {
        // Below half the smallest subnormal (about 2.5e-324).
        return Some(sign * 0.0);
    }
    let value = if digits.len() <= 19 {
        let w = digits
            .iter()
            .fold(0u64, |w, d| w * 10 + u64::from(d - b'0'));
        if w <= 1 << 53 && (-22..=22).contains(&exp10) {
            // Both exact, so one rounding: the nearest.
            return Some(if exp10 >= 0 {
                sign * w as f64 * POW10[exp10 as usize]
            } else {
                sign * (w as f64 / POW10[-exp10 as usize])
            });
        }
        if (-19..=19).contains(&exp10) {
            nearest_u128(w, exp10)
        } else {
            nearest_big(&digits, exp10, false)
        }
    } else {
        nearest_big(&digits, exp10, above)
    };
    value.map(|v| sign * v)
}

/// The exponent after `e`, saturated far past any `f64`.
fn exponent_of(text: &str) -> i64 {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let e = digits
        .bytes()
        .fold(0i64, |e, d| (e * 10 + i64::from(d - b'0')).min(1 << 40));
    if negative {
        -e
    } else {
        e
    }
}

/// `w × 10^exp10` for `|exp10| <= 19`, exactly in 128 bits.
fn nearest_u128(w: u64, exp10: i64) -> Option<f64> {
    let pow = 10u128.pow(exp10.unsigned_abs() as u32);
    let (num, den) = if exp10 >= 0 {
        (u128::from(w) * pow, 1)
    } else {
        (u128::from(w), pow)
    };
    // q such that num / (den 2^q) has 53 bits: num and den fit in 128 bits once shifted, since
    // num < 2^128 and den < 2^64.
    let bits = |x: u128| 128 - i64::from(x.leading_zeros());
    let mut q = bits(num) - bits(den) - 53;
    let scaled = |q: i64| {
        if q >= 0 {
            (num, den << q)
        } else {
            (num << -q, den)
        }
    };
    let (mut a, mut b) = scaled(q);
    if a / b >= 1 << 53 {
        q += 1;
        (a, b) = scaled(q);
    }
    let m = (a / b) as u64;
    let half = (a % b).cmp(&(b - a % b));
    compose(m, q, half)
}

/// `digits × 10^exp10`, exactly with big integers; `above`: the value is a little more.
fn nearest_big(digits: &[u8], exp10: i64, above: bool) -> Option<f64> {
    let mut num = Big::from_digits(digits);
    let mut den = Big(vec![1]);
    if exp10 >= 0 {
        num.mul_pow10(exp10 as u32);
    } else {
        den.mul_pow10(-exp10 as u32);
    }
    // q such that 2^52 <= num / (den 2^q) < 2^53, but never below the subnormals' -1074.
    let mut q = num.bits() - den.bits() - 53;
    let scaled = |q: i64| {
        if q >= 0 {
            (num.clone(), den.shl(q as u64))
        } else {
            (num.shl(-q as u64), den.clone())
        }
    };
    let (mut a, mut b) = scaled(q);
    if a.cmp(&b.shl(53)) != Ordering::Less {
        q += 1;
        (a, b) = scaled(q);
    }
    if q < -1074 {
        q = -1074;
        (a, b) = scaled(q);
    }
    let mut m = 0u64;
    for bit in (0..53).rev() {
        let part = b.shl(bit);
        if a.cmp(&part) != Ordering::Less {
            a.sub(&part);
            m |= 1 << bit;
        }
    }
    // `a` is the remainder now: compare it with what is left to the next multiple of `b`.
    let half = match a.shl(1).cmp(&b) {
        Ordering::Equal if above => Ordering::Greater,
        half => half,
    };
    compose(m, q, half)
}

/// `m × 2^q` rounded by `half`, how the remainder compares with half a unit (ties to even),
/// as an `f64`; `None` past the largest.
fn compose(mut m: u64, mut q: i64, half: Ordering) -> Option<f64> {
    if half == Ordering::Greater || (half == Ordering::Equal && m & 1 == 1) {
        m += 1;
        if m == 1 << 53 {
            m >>= 1;
            q += 1;
        }
    }
    // m below 2^52 only at the subnormals (q = -1074), whose bits are m itself; from 2^52 up
    // the exponent field is q + 1075 and the fraction m - 2^52, which is m's bits too at -1074.
    if m < 1 << 52 {
        return Some(f64::from_bits(m));
    }
    if q > 971 {
        return None;
    }
    Some(f64::from_bits(((q + 1075) as u64) << 52 | (m - (1 << 52))))
}

/// A big unsigned integer: 32-bit limbs, the least significant first, no zero limb on top.
#[derive(Clone)]
struct Big(Vec<u32>);

impl Big {
    fn from_digits(digits: &[u8]) -> Big {
        let mut big = Big(Vec::new());
        for chunk in digits.chunks(9) {
            let value = chunk.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
            big.mul_add(10u32.pow(chunk.len() as u32), value);
        }
        big
    }

    fn mul_add(&mut self, factor: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(factor) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut e: u32) {
        while e > 0 {
            let step = e.min(9);
            self.mul_add(10u32.pow(step), 0);
            e -= step;
        }
    }

    fn bits(&self) -> i64 {
        self.0.last().map_or(0, |top| {
            32 * self.0.len() as i64 - i64::from(top.leading_zeros())
        })
    }

    fn shl(&self, n: u64) -> Big {
        let (limbs, shift) = ((n / 32) as usize, (n % 32) as u32);
        let mut out = vec![0; limbs];
        let mut carry = 0u32;
        for limb in &self.0 {
            out.push(limb << shift | carry);
            carry = if shift == 0 { 0 } else { limb >> (32 - shift) };
        }
        if carry > 0 {
            out.push(carry);
        }
        Big(out)
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// `self - other`, which must not be negative.
    fn sub(&mut self, other: &Big) {
        let mut borrow = false;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let (v, b1) = limb.overflowing_sub(other.0.get(i).copied().unwrap_or(0));
            let (v, b2) = v.overflowing_sub(u32::from(borrow));
            *limb = v;
            borrow = b1 || b2;
        }
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// Each text must parse to what `str::parse` gives, bit for bit.
    fn same(text: &str) {
        let std = text.parse::<f64>().ok().filter(|v| v.is_finite());
        let ours = parse(text);
        assert_eq!(
            ours.map(f64::to_bits),
            std.map(f64::to_bits),
            "{text}: {ours:?}, str::parse gives {std:?}"
        );
    }

    #[test]
    fn edge_cases_match_str_parse() {
        for text in [
            "0",
            "-0",
            "0.0",
            "0e5",
            "-0.000e-7",
            "1",
            "-1",
            "9007199254740992",
            "9007199254740993",
            "9007199254740995",
            "18014398509481985",
            "0.1",
            "0.2",
            "0.30000000000000004",
            "1e22",
            "1e23",
            "8.98846567431158e307",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1e309",
            "1e999999999999999",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "5e-324",
            "1e-324",
            "3e-324",
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "2.2250738585072014e-308",
            "1e-400",
            "-1e-999999999999",
            "123456789012345678901234567890",
            "1.5e300",
            "0.000000000000000000000000000001",
            "7.038531e-26",
            "1.00000000000000011102230246251565404236316680908203125",
            "1.00000000000000011102230246251565404236316680908203124",
            "1.00000000000000011102230246251565404236316680908203126",
            "4503599627370496.5",
            "4503599627370497.5",
            "12345678901234567890e-10",
            "99999999999999999999e-19",
        ] {
            same(text);
        }
        // A long run of digits, and one just past a halfway point deep in it.
        same(&format!("1.{}e10", "0".repeat(800)));
        same(&format!("0.{}1e-300", "0".repeat(700)));
        same(&format!("9007199254740993{}1", "0".repeat(600)));
        // Past the digits kept: halfway points, then a last digit that puts each above.
        same(&format!("9007199254740993{}1", "0".repeat(2000)));
        same(&format!("9007199254740993{}", "0".repeat(2000)));
        // Half the smallest subnormal, 2^-1075 = 5^1075 / 10^1075 (752 digits).
        let mut half = vec![1u8];
        for _ in 0..1075 {
            let mut carry = 0;
            for d in half.iter_mut() {
                let v = *d * 5 + carry;
                (*d, carry) = (v % 10, v / 10);
            }
            if carry > 0 {
                half.push(carry);
            }
        }
        let half: String = half.iter().rev().map(|d| char::from(b'0' + d)).collect();
        same(&format!("{half}e-1075"));
        same(&format!("{half}{}1e-3075", "0".repeat(1999)));
        // A number as long as an event may be: linear in its digits, so quick.
        same(&format!("1.{}1", "0".repeat(1 << 20)));
    }

    /// A small deterministic generator, so a failure is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn every_f64_printed_parses_back_as_str_parse_does() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            let v = f64::from_bits(rng.next());
            if !v.is_finite() {
                continue;
            }
            // Shortest round-trip forms, and 17 significant digits (what JSON.stringify and
            // printf give).
            same(&format!("{v}"));
            same(&format!("{v:e}"));
            same(&format!("{v:.16e}"));
        }
    }

    #[test]
    fn random_decimals_match_str_parse() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..100_000 {
            let long = rng.below(8) == 0;
            let digits = 1 + rng.below(if long { 40 } else { 20 });
            let mut text: String = (0..digits)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            text.insert(0, '1');
            if rng.below(2) == 0 {
                let point = 1 + rng.below(text.len() as u64) as usize;
                if point < text.len() {
                    text.insert(point, '.');
                }
            }
            let exp = rng.below(700) as i64 - 360;
            let text = match rng.below(3) {
                0 => text,
                _ => format!("{text}e{exp}"),
            };
            same(&text);
        }
    }
}
