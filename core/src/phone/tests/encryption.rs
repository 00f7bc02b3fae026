//! Nothing for a thief: with a key, no file in the store's directory holds a complainant's name
//! or number; without one they are there in plain text (so the test can fail). A wrong key is
//! its own error and changes no file.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::store::StoreKey;

const NAME: &str = "欧阳娜娜";
const NUMBER: &str = "13912345678";

/// Every file in `dir` (the database, its -wal and -shm, any journal), by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// The files that hold `needle`.
fn holding(files: &BTreeMap<String, Vec<u8>>, needle: &str) -> Vec<String> {
    let needle = needle.as_bytes();
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Writes a case with a known complainant (and a note naming them), and returns what the raw
/// files held while the store was open and after it was closed.
fn write_and_read_raw(
    key: Option<&StoreKey>,
) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::open(dir.path().join("phone.db"), TOKEN, NONCE, key).unwrap();
    phone.set_identity_for_tests(&identity()).unwrap();
    let complainant = Complainant {
        name: NAME.into(),
        phone: NUMBER.into(),
        anonymous: false,
    };
    phone
        .create_case(
            &new_case("c1", "噪音", "330604101201"),
            Some(&complainant),
            T0,
        )
        .unwrap();
    phone
        .add_note("c1", &format!("已联系{NAME}，电话{NUMBER}"), T0 + 1)
        .unwrap();
    let open = files(dir.path());
    assert!(
        open.keys().any(|n| n.ends_with("-wal")),
        "{:?}",
        open.keys()
    );
    drop(phone);
    (open, files(dir.path()))
}

#[test]
fn an_encrypted_store_gives_nothing_away_and_a_plain_one_does() {
    let key = StoreKey::new([42; 32]);
    let (open, closed) = write_and_read_raw(Some(&key));
    for files in [&open, &closed] {
        assert_eq!(holding(files, NAME), Vec::<String>::new());
        assert_eq!(holding(files, NUMBER), Vec::<String>::new());
    }
    // The same without a key: the grep finds them, so it would catch a leak.
    let (open, closed) = write_and_read_raw(None);
    assert!(!holding(&open, NAME).is_empty());
    assert!(!holding(&open, NUMBER).is_empty());
    assert!(!holding(&closed, NAME).is_empty());
    assert!(!holding(&closed, NUMBER).is_empty());
}

#[test]
fn a_wrong_key_is_its_own_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let key = StoreKey::new([1; 32]);
    let phone = Phone::open(&path, TOKEN, NONCE, Some(&key)).unwrap();
    phone.set_identity_for_tests(&identity()).unwrap();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    drop(phone);
    let before = files(dir.path());

    let wrong = StoreKey::new([2; 32]);
    let err = Phone::open(&path, TOKEN, NONCE, Some(&wrong)).unwrap_err();
    assert_eq!(err.code(), "wrong_key");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(files(dir.path()), before, "the files are untouched");
    // Without a key the file is not readable either, and says so.
    let err = Phone::open(&path, TOKEN, NONCE, None).unwrap_err();
    assert_eq!(err.code(), "storage");
    assert_eq!(files(dir.path()), before);

    // The right key still opens it, with everything in it.
    let phone = Phone::open(&path, TOKEN, NONCE, Some(&key)).unwrap();
    assert_eq!(phone.get_case("c1").unwrap().case.title, "噪音");
}

#[test]
fn a_key_is_exactly_32_bytes() {
    assert!(StoreKey::from_slice(&[0; 32]).is_ok());
    let err = PhoneError::from(StoreKey::from_slice(&[0; 16]).unwrap_err());
    assert_eq!(err.code(), "bad_key");
    assert_eq!(format!("{:?}", StoreKey::new([9; 32])), "StoreKey(..)");
}
