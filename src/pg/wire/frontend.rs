//! Frontend messages, encoded into a buffer.

/// Protocol version 3.0.
const PROTOCOL_V3: i32 = 196_608;
/// The SSLRequest code.
const SSL_REQUEST: i32 = 80_877_103;

/// Appends a message: tag (none for startup-style messages), length, body.
fn message(out: &mut Vec<u8>, tag: Option<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    out.extend(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn ssl_request(out: &mut Vec<u8>) {
    message(out, None, |o| {
        o.extend_from_slice(&SSL_REQUEST.to_be_bytes())
    });
}

/// StartupMessage with `user`, `database` and other parameters.
pub fn startup(out: &mut Vec<u8>, params: &[(&str, &str)]) {
    message(out, None, |o| {
        o.extend_from_slice(&PROTOCOL_V3.to_be_bytes());
        for (k, v) in params {
            cstr(o, k);
            cstr(o, v);
        }
        o.push(0);
    });
}

pub fn password(out: &mut Vec<u8>, password: &str) {
    message(out, Some(b'p'), |o| cstr(o, password));
}

pub fn sasl_initial(out: &mut Vec<u8>, mechanism: &str, data: &[u8]) {
    message(out, Some(b'p'), |o| {
        cstr(o, mechanism);
        o.extend_from_slice(&(data.len() as i32).to_be_bytes());
        o.extend_from_slice(data);
    });
}

pub fn sasl_response(out: &mut Vec<u8>, data: &[u8]) {
    message(out, Some(b'p'), |o| o.extend_from_slice(data));
}

pub fn query(out: &mut Vec<u8>, sql: &str) {
    message(out, Some(b'Q'), |o| cstr(o, sql));
}

/// Parse + Bind + Execute + Sync of an unnamed statement with text parameters and text
/// results: one round trip.
pub fn extended(out: &mut Vec<u8>, sql: &str, params: &[Option<&[u8]>]) {
    message(out, Some(b'P'), |o| {
        cstr(o, "");
        cstr(o, sql);
        o.extend_from_slice(&0u16.to_be_bytes());
    });
    message(out, Some(b'B'), |o| {
        cstr(o, "");
        cstr(o, "");
        o.extend_from_slice(&0u16.to_be_bytes()); // all parameters in text format
        o.extend_from_slice(&(params.len() as u16).to_be_bytes());
        for p in params {
            match p {
                None => o.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    o.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    o.extend_from_slice(v);
                }
            }
        }
        o.extend_from_slice(&0u16.to_be_bytes()); // all results in text format
    });
    message(out, Some(b'E'), |o| {
        cstr(o, "");
        o.extend_from_slice(&0i32.to_be_bytes());
    });
    message(out, Some(b'S'), |_| {});
}

pub fn terminate(out: &mut Vec<u8>) {
    message(out, Some(b'X'), |_| {});
}
