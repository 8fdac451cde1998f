//! Unit tests for the pickle reader on hand-assembled opcode bytes.

use super::*;

fn p(bytes: &[u8]) -> Result<Pickle, PickleError> {
    parse(bytes, 0)
}

fn s(text: &str) -> Value {
    Value::Str(Rc::from(text))
}

#[test]
fn scalars() {
    let cases: &[(&[u8], Value)] = &[
        (b"\x80\x02N.", Value::None),
        (b"\x80\x02\x88.", Value::Bool(true)),
        (b"\x80\x02\x89.", Value::Bool(false)),
        (b"K\xff.", Value::Int(255)),
        (b"M\x01\x02.", Value::Int(0x0201)),
        (b"J\xff\xff\xff\xff.", Value::Int(-1)),
        (b"\x8a\x00.", Value::Int(0)),
        (b"\x8a\x01\xff.", Value::Int(-1)),
        (b"\x8a\x02\x00\x80.", Value::Int(-32768)),
        (b"\x8a\x02\xff\x00.", Value::Int(255)),
        (b"\x8b\x01\x00\x00\x00\x05.", Value::Int(5)),
        (b"G\x3f\xf8\x00\x00\x00\x00\x00\x00.", Value::Float(1.5)),
        (b"\x8c\x02hi.", s("hi")),
        (b"X\x03\x00\x00\x00\xc3\xa9!.", s("\u{e9}!")),
        (b"\x8d\x01\x00\x00\x00\x00\x00\x00\x00z.", s("z")),
        (b"U\x02\xe9a.", s("\u{e9}a")),
        (b"T\x01\x00\x00\x00q.", s("q")),
        (b"C\x02\x00\x01.", Value::Bytes(Rc::from(&[0u8, 1][..]))),
        (
            b"B\x01\x00\x00\x00\x07.",
            Value::Bytes(Rc::from(&[7u8][..])),
        ),
    ];
    for (bytes, want) in cases {
        let got = p(bytes).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
        assert_eq!(got.root(), want, "{bytes:?}");
        assert_eq!(got.end(), bytes.len());
    }
    let big = p(b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.").expect("magic");
    assert!(matches!(big.root(), Value::BigInt(b) if b.len() == 10));
}

#[test]
fn containers_marks_and_tuples() {
    // ((1, 2, 3), [4, 5], {'a': 6}, (), (7,), (8, 9), (10, 11, 12, 13))
    let bytes = b"((K\x01K\x02K\x03t]q\x00(K\x04K\x05e}(\x8c\x01aK\x06u)K\x07\x85K\x08K\x09\x86(K\x0aK\x0bK\x0cK\x0dtt.";
    let pk = p(bytes).expect("parses");
    let items = pk.tuple(pk.root()).expect("tuple");
    assert_eq!(items.len(), 7);
    assert_eq!(
        pk.tuple(&items[0]),
        Some(&[Value::Int(1), Value::Int(2), Value::Int(3)][..])
    );
    assert_eq!(
        pk.list(&items[1]),
        Some(&[Value::Int(4), Value::Int(5)][..])
    );
    assert_eq!(pk.dict(&items[2]), Some(&[(s("a"), Value::Int(6))][..]));
    assert_eq!(pk.tuple(&items[3]).map(<[_]>::len), Some(0));
    assert_eq!(pk.tuple(&items[4]), Some(&[Value::Int(7)][..]));
    assert_eq!(pk.tuple(&items[5]).map(<[_]>::len), Some(2));
    assert_eq!(pk.tuple(&items[6]).map(<[_]>::len), Some(4));
}

#[test]
fn memo_shares_mutations_like_python() {
    // l = []; memo[0] = l; l.append(1); then (l, memo[0]) — both must show [1].
    let bytes = b"]q\x00K\x01ah\x00\x86.";
    let pk = p(bytes).expect("parses");
    let pair = pk.tuple(pk.root()).expect("tuple");
    assert_eq!(pair[0], pair[1]);
    assert_eq!(pk.list(&pair[1]), Some(&[Value::Int(1)][..]));
    // MEMOIZE numbers entries by count; LONG_BINGET reads them back.
    let bytes = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00K\x05\x94K\x06\x94j\x01\x00\x00\x00h\x00\x86\x86.";
    let pk = p(bytes).expect("parses");
    let outer = pk.tuple(pk.root()).expect("tuple");
    assert_eq!(
        pk.tuple(&outer[1]),
        Some(&[Value::Int(6), Value::Int(5)][..])
    );
}

#[test]
fn globals_reduce_build_and_persistent_ids_are_inert() {
    let bytes = b"ctorch._utils\n_rebuild_tensor_v2\n(X\x07\x00\x00\x00storage\x85QK\x00tR.";
    let pk = p(bytes).expect("parses");
    let Some(Object::Call { func, args }) = pk.object(pk.root()) else {
        panic!("expected a call, got {:?}", pk.root());
    };
    assert_eq!(
        pk.global(func),
        Some(("torch._utils", "_rebuild_tensor_v2"))
    );
    let args = pk.tuple(args).expect("args");
    assert!(matches!(pk.object(&args[0]), Some(Object::PersistentId(_))));

    // STACK_GLOBAL + NEWOBJ + BUILD on a non-dict stays a record.
    let bytes = b"\x8c\x03foo\x8c\x03Bar\x93)\x81}b.";
    let pk = p(bytes).expect("parses");
    assert!(matches!(pk.object(pk.root()), Some(Object::Build { .. })));

    // OrderedDict() becomes a real dict; BUILD on it keeps the dict.
    let bytes = b"ccollections\nOrderedDict\n)R(\x8c\x01kK\x01u}b.";
    let pk = p(bytes).expect("parses");
    assert_eq!(pk.dict(pk.root()), Some(&[(s("k"), Value::Int(1))][..]));
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let bad: &[&[u8]] = &[
        b"",
        b"\x80",
        b"\x80\x06N.",
        b"N",
        b".",
        b"t.",
        b"(0.",
        b"K\x01(0.",
        b"K\x01(t0t.",
        b"K\x01a.",
        b"]K\x01K\x02s.",
        b"}(K\x01u.",
        b"h\x05.",
        b"q\x00.",
        b"cmod.",
        b"cmod\nname",
        b"X\xff\xff\xff\xffab.",
        b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff.",
        b"\x8b\xff\xff\xff\xff.",
        b"T\xff\xff\xff\xff.",
        b"\x8c\x02\xff\xfe.",
        b"K\x01K\x02\x93.",
        b"1.",
        b"e.",
        b"R.",
    ];
    for bytes in bad {
        assert!(p(bytes).is_err(), "{bytes:?} should fail");
    }
}

#[test]
fn unknown_opcode_is_named_with_offset() {
    let err = p(b"\x80\x02N\x90.").expect_err("ADDITEMS unsupported");
    assert_eq!(err.offset, 3);
    assert_eq!(err.opcode, Some(0x90));
    let msg = err.to_string();
    assert!(
        msg.contains("0x90") && msg.contains("ADDITEMS") && msg.contains("offset 3"),
        "{msg}"
    );
    let msg = p(b"N\xfe").expect_err("unknown").to_string();
    assert!(msg.contains("0xfe") && msg.contains("offset 1"), "{msg}");
}

#[test]
fn start_offset_and_error_offsets_are_absolute() {
    let bytes = b"K\x01.K\x02.";
    let first = parse(bytes, 0).expect("first");
    let second = parse(bytes, first.end()).expect("second");
    assert_eq!(second.root(), &Value::Int(2));
    assert_eq!(second.end(), bytes.len());
    let err = parse(b"NNNh\x09.", 3).expect_err("missing memo");
    assert_eq!(err.offset, 3);
    assert!(parse(b"N.", 10).is_err(), "start past the end");
}

#[test]
fn deep_nesting_and_self_reference_do_not_overflow() {
    // 200k nested 1-tuples and a list that contains itself.
    let mut bytes = vec![b')'];
    bytes.extend(std::iter::repeat_n(0x85u8, 200_000));
    bytes.push(b'.');
    assert!(p(&bytes).is_ok());
    let pk = p(b"]q\x00h\x00a.").expect("self-referencing list");
    assert_eq!(pk.list(pk.root()).map(<[_]>::len), Some(1));
}
