//! What we read of an X.509 v3 certificate (RFC 5280): names, validity, public key and the few
//! extensions callers look at. The structure is checked whole; extension contents are read
//! only when asked for. Signatures are not checked here: `pki::live` and rustls do that.

use std::net::IpAddr;

use crate::pki::der::{self, DerError, DerResult, Tlv};

/// OID contents (the bytes after tag and length) of the attributes and extensions we read.
pub mod oid {
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    pub const ORGANIZATIONAL_UNIT: &[u8] = &[0x55, 0x04, 0x0b];
    /// The X.500 `name` attribute (2.5.4.41).
    pub const NAME: &[u8] = &[0x55, 0x04, 0x29];
    pub const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    pub const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    pub const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
    /// id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
    pub const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    /// id-kp-clientAuth (1.3.6.1.5.5.7.3.2).
    pub const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
}

/// Most attributes in a name, and extensions in a certificate, that we accept: far above what
/// any real certificate has, so a crafted one cannot make us allocate much.
const MAX_ITEMS: usize = 64;

/// One attribute of a distinguished name, its value still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Content of the attribute type's OID.
    pub oid: &'a [u8],
    /// The value element (a string type for every attribute we read).
    pub value: Tlv<'a>,
    /// Index of the relative distinguished name (SET) holding it.
    pub rdn: usize,
}

/// A distinguished name: its DER (header included) and its attributes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name<'a> {
    pub raw: &'a [u8],
    pub attributes: Vec<Attribute<'a>>,
}

impl<'a> Name<'a> {
    pub fn parse(tlv: Tlv<'a>) -> DerResult<Self> {
        let mut attributes = Vec::new();
        let mut rdns = tlv.reader();
        let mut rdn = 0;
        while !rdns.is_empty() {
            let mut set = rdns.expect(der::SET)?.reader();
            if set.is_empty() {
                return Err(DerError::BadValue("empty relative distinguished name"));
            }
            while !set.is_empty() {
                let mut atv = set.expect(der::SEQUENCE)?.reader();
                let oid = atv.expect(der::OID)?.content;
                let value = atv.any()?;
                atv.finish()?;
                if attributes.len() == MAX_ITEMS {
                    return Err(DerError::BadValue("name (too many attributes)"));
                }
                attributes.push(Attribute { oid, value, rdn });
            }
            rdn += 1;
        }
        Ok(Name {
            raw: tlv.raw,
            attributes,
        })
    }

    /// The first value of attribute `oid` as text, `None` if the name has none.
    pub fn first(&self, oid: &[u8]) -> DerResult<Option<String>> {
        self.attributes
            .iter()
            .find(|a| a.oid == oid)
            .map(|a| der::string(&a.value))
            .transpose()
    }
}

/// One extension, its value still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<'a> {
    pub oid: &'a [u8],
    pub critical: bool,
    /// Content of the extnValue OCTET STRING.
    pub value: &'a [u8],
}

/// A name in a subject alternative name extension (the kinds we use; others are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneralName {
    Dns(String),
    Uri(String),
    Ip(IpAddr),
}

/// A parsed certificate, borrowing from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate<'a> {
    pub issuer: Name<'a>,
    pub subject: Name<'a>,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The whole SubjectPublicKeyInfo (what SPKI pins hash).
    pub spki_raw: &'a [u8],
    /// The subjectPublicKey bits (an EC point, an RSAPublicKey, an Ed25519 key).
    pub public_key: &'a [u8],
    pub extensions: Vec<Extension<'a>>,
}

impl<'a> Certificate<'a> {
    /// Parses one DER certificate, with nothing after it.
    pub fn parse(der: &'a [u8]) -> DerResult<Self> {
        let mut cert = der::single(der, der::SEQUENCE)?.reader();
        let tbs = cert.expect(der::SEQUENCE)?;
        cert.expect(der::SEQUENCE)?; // signatureAlgorithm
        der::bit_string_bytes(&cert.expect(der::BIT_STRING)?)?;
        cert.finish()?;

        let mut r = tbs.reader();
        // version [0] EXPLICIT INTEGER DEFAULT v1
        if let Some(v) = r.optional(0xa0)? {
            let version = der::single(v.content, der::INTEGER)?;
            if !matches!(version.content, [0] | [1] | [2]) {
                return Err(DerError::BadValue("certificate version"));
            }
        }
        r.expect(der::INTEGER)?; // serialNumber
        r.expect(der::SEQUENCE)?; // signature
        let issuer = Name::parse(r.expect(der::SEQUENCE)?)?;
        let mut validity = r.expect(der::SEQUENCE)?.reader();
        let not_before = der::time(&validity.any()?)?;
        let not_after = der::time(&validity.any()?)?;
        validity.finish()?;
        let subject = Name::parse(r.expect(der::SEQUENCE)?)?;
        let spki = r.expect(der::SEQUENCE)?;
        let public_key = {
            let mut s = spki.reader();
            s.expect(der::SEQUENCE)?; // algorithm
            let key = der::bit_string_bytes(&s.expect(der::BIT_STRING)?)?;
            s.finish()?;
            key
        };
        r.optional(0x81)?; // issuerUniqueID
        r.optional(0x82)?; // subjectUniqueID
        let extensions = match r.optional(0xa3)? {
            Some(exts) => parse_extensions(exts.content)?,
            None => Vec::new(),
        };
        r.finish()?;
        Ok(Certificate {
            issuer,
            subject,
            not_before,
            not_after,
            spki_raw: spki.raw,
            public_key,
            extensions,
        })
    }

    /// The value of extension `oid`, if present.
    pub fn extension(&self, oid: &[u8]) -> Option<&Extension<'a>> {
        self.extensions.iter().find(|e| e.oid == oid)
    }

    /// The subject key identifier, if the certificate has one.
    pub fn subject_key_id(&self) -> DerResult<Option<&'a [u8]>> {
        self.extension(oid::SUBJECT_KEY_ID)
            .map(|e| der::single(e.value, der::OCTET_STRING).map(|t| t.content))
            .transpose()
    }

    /// The DNS names, URIs and IP addresses of the subject alternative name extension (none
    /// without it). Other kinds of names are skipped.
    pub fn subject_alt_names(&self) -> DerResult<Vec<GeneralName>> {
        let Some(ext) = self.extension(oid::SUBJECT_ALT_NAME) else {
            return Ok(Vec::new());
        };
        let mut names = der::single(ext.value, der::SEQUENCE)?.reader();
        let mut out = Vec::new();
        while !names.is_empty() {
            let name = names.any()?;
            let text = || {
                std::str::from_utf8(name.content)
                    .ok()
                    .filter(|s| s.is_ascii())
                    .map(str::to_string)
                    .ok_or(DerError::BadValue("IA5String"))
            };
            match name.tag {
                0x82 => out.push(GeneralName::Dns(text()?)),
                0x86 => out.push(GeneralName::Uri(text()?)),
                0x87 => out.push(GeneralName::Ip(match name.content.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(name.content).unwrap_or_default()),
                    16 => IpAddr::from(<[u8; 16]>::try_from(name.content).unwrap_or_default()),
                    _ => return Err(DerError::BadValue("IP address")),
                })),
                _ => {}
            }
            if out.len() > MAX_ITEMS * 16 {
                return Err(DerError::BadValue("subject alternative names (too many)"));
            }
        }
        Ok(out)
    }

    /// The OID contents of the extended key usage extension (none without it).
    pub fn extended_key_usages(&self) -> DerResult<Vec<&'a [u8]>> {
        let Some(ext) = self.extension(oid::EXT_KEY_USAGE) else {
            return Ok(Vec::new());
        };
        let mut oids = der::single(ext.value, der::SEQUENCE)?.reader();
        let mut out = Vec::new();
        while !oids.is_empty() {
            if out.len() == MAX_ITEMS {
                return Err(DerError::BadValue("extended key usages (too many)"));
            }
            out.push(oids.expect(der::OID)?.content);
        }
        Ok(out)
    }
}

/// Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension; each type at most once (RFC 5280).
fn parse_extensions(explicit: &[u8]) -> DerResult<Vec<Extension<'_>>> {
    let mut list = der::single(explicit, der::SEQUENCE)?.reader();
    let mut out: Vec<Extension<'_>> = Vec::new();
    while !list.is_empty() {
        let mut e = list.expect(der::SEQUENCE)?.reader();
        let oid = e.expect(der::OID)?.content;
        // DER leaves out a DEFAULT FALSE, so an encoded critical flag is TRUE (0xff).
        let critical = match e.optional(der::BOOLEAN)? {
            None => false,
            Some(b) if b.content == [0xff] => true,
            Some(_) => return Err(DerError::BadValue("extension critical flag")),
        };
        let value = e.expect(der::OCTET_STRING)?.content;
        e.finish()?;
        if out.iter().any(|x| x.oid == oid) {
            return Err(DerError::BadValue("certificate (duplicate extension)"));
        }
        if out.len() == MAX_ITEMS {
            return Err(DerError::BadValue("certificate (too many extensions)"));
        }
        out.push(Extension {
            oid,
            critical,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;
