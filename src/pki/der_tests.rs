use super::*;

fn read_one(bytes: &[u8]) -> DerResult<Tlv<'_>> {
    let mut r = Reader::new(bytes);
    let t = r.any()?;
    r.finish()?;
    Ok(t)
}

#[test]
fn reads_short_and_long_lengths_and_keeps_the_raw_bytes() {
    let t = read_one(&[0x04, 0x02, 0xaa, 0xbb]).unwrap();
    assert_eq!(
        (t.tag, t.content, t.raw.len()),
        (0x04, &[0xaa, 0xbb][..], 4)
    );
    let mut long = vec![0x04, 0x81, 0x80];
    long.extend([7; 0x80]);
    assert_eq!(read_one(&long).unwrap().content.len(), 0x80);
    let mut longer = vec![0x04, 0x82, 0x01, 0x00];
    longer.extend([7; 0x100]);
    assert_eq!(read_one(&longer).unwrap().raw, &longer[..]);
}

#[test]
fn truncated_input_is_an_error() {
    for bad in [
        &[][..],
        &[0x30],
        &[0x30, 0x02, 0x05],
        &[0x30, 0x81],
        &[0x30, 0x82, 0x01],
        &[0x04, 0x81, 0x80, 0x00],
    ] {
        assert_eq!(
            Reader::new(bad).any(),
            Err(DerError::Truncated),
            "{bad:02x?}"
        );
    }
}

#[test]
fn oversize_non_minimal_and_indefinite_lengths_are_errors() {
    // A length beyond the input, beyond four bytes, in the long form below 128, with a
    // leading zero byte, and BER's indefinite form.
    assert_eq!(
        Reader::new(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0]).any(),
        Err(DerError::Truncated)
    );
    assert_eq!(
        Reader::new(&[0x04, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0]).any(),
        Err(DerError::BadLength)
    );
    assert_eq!(
        Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).any(),
        Err(DerError::BadLength)
    );
    assert_eq!(
        Reader::new(&[0x04, 0x82, 0x00, 0x80, 0]).any(),
        Err(DerError::BadLength)
    );
    assert_eq!(
        Reader::new(&[0x30, 0x80, 0x05, 0x00, 0x00, 0x00]).any(),
        Err(DerError::IndefiniteLength)
    );
}

#[test]
fn wrong_tags_high_tags_and_trailing_bytes_are_errors() {
    let mut r = Reader::new(&[0x02, 0x01, 0x00]);
    assert_eq!(
        r.expect(SEQUENCE),
        Err(DerError::UnexpectedTag {
            expected: SEQUENCE,
            found: INTEGER
        })
    );
    assert_eq!(r.optional(SEQUENCE), Ok(None));
    assert!(r.optional(INTEGER).unwrap().is_some());
    assert_eq!(r.expect(INTEGER), Err(DerError::Truncated));
    assert_eq!(
        Reader::new(&[0x1f, 0x81, 0x01, 0x00]).any(),
        Err(DerError::HighTag)
    );
    assert_eq!(
        single(&[0x05, 0x00, 0x00], NULL),
        Err(DerError::TrailingData)
    );
}

#[test]
fn bit_strings_must_be_whole_bytes() {
    let t = |c: &'static [u8]| Tlv {
        tag: BIT_STRING,
        content: c,
        raw: c,
    };
    assert_eq!(bit_string_bytes(&t(&[0, 1, 2])), Ok(&[1u8, 2][..]));
    assert!(bit_string_bytes(&t(&[3, 0xf8])).is_err());
    assert!(bit_string_bytes(&t(&[])).is_err());
}

#[test]
fn object_identifiers() {
    assert_eq!(oid_arcs(&[0x55, 0x04, 0x29]).unwrap(), vec![2, 5, 4, 41]);
    assert_eq!(
        oid_arcs(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]).unwrap(),
        vec![1, 2, 840, 10045, 2, 1]
    );
    assert_eq!(oid_arcs(&[0x88, 0x37]).unwrap(), vec![2, 999]);
    for bad in [&[][..], &[0x86], &[0x2a, 0x80, 0x01], &[0xff; 12]] {
        assert!(oid_arcs(bad).is_err(), "{bad:02x?}");
    }
}

fn tlv(tag: u8, content: &[u8]) -> Tlv<'_> {
    Tlv {
        tag,
        content,
        raw: content,
    }
}

#[test]
fn strings_of_each_type_and_invalid_ones() {
    assert_eq!(string(&tlv(UTF8_STRING, "é".as_bytes())).unwrap(), "é");
    assert_eq!(string(&tlv(PRINTABLE_STRING, b"Old CA")).unwrap(), "Old CA");
    assert_eq!(string(&tlv(BMP_STRING, &[0, b'h', 0, b'i'])).unwrap(), "hi");
    assert_eq!(
        string(&tlv(UNIVERSAL_STRING, &[0, 0, 0, b'x'])).unwrap(),
        "x"
    );
    for bad in [
        tlv(UTF8_STRING, &[0xff, 0xfe]),
        tlv(IA5_STRING, &[0xc3]),
        tlv(BMP_STRING, &[0]),
        tlv(BMP_STRING, &[0xd8, 0x00]),
        tlv(UNIVERSAL_STRING, &[0, 0x11, 0, 0]),
        tlv(OCTET_STRING, b"x"),
    ] {
        assert!(string(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn times_at_the_edges() {
    let t = |tag, s: &str| time(&tlv(tag, s.as_bytes()));
    assert_eq!(t(UTC_TIME, "700101000000Z"), Ok(0));
    assert_eq!(t(UTC_TIME, "491231235959Z"), Ok(2_524_607_999));
    assert_eq!(t(UTC_TIME, "500101000000Z"), Ok(-631_152_000));
    assert_eq!(t(GENERALIZED_TIME, "20500101000000Z"), Ok(2_524_608_000));
    assert_eq!(t(GENERALIZED_TIME, "99991231235959Z"), Ok(253_402_300_799));
    assert_eq!(t(GENERALIZED_TIME, "00000101000000Z"), Ok(-62_167_219_200));
    assert_eq!(t(UTC_TIME, "240229120000Z"), Ok(1_709_208_000));
    for (tag, bad) in [
        (UTC_TIME, "230229120000Z"),
        (UTC_TIME, "000100000000Z"),
        (UTC_TIME, "001301000000Z"),
        (UTC_TIME, "000101240000Z"),
        (UTC_TIME, "000101006000Z"),
        (UTC_TIME, "000101000060Z"),
        (UTC_TIME, "0001010000Z"),
        (UTC_TIME, "000101000000+0100"),
        (UTC_TIME, "00010100000 Z"),
        (UTC_TIME, "-00101000000Z"),
        (GENERALIZED_TIME, "20000101000000.5Z"),
        (GENERALIZED_TIME, "20000101000000"),
        (GENERALIZED_TIME, "000101000000Z"),
        (UTC_TIME, "20000101000000Z"),
    ] {
        assert!(t(tag, bad).is_err(), "{bad}");
    }
    assert!(t(OCTET_STRING, "700101000000Z").is_err());
    assert!(time(&tlv(UTC_TIME, &[0xff; 13])).is_err());
}
