//! The additional authenticated data (AAD) of cachekit-py's format v3,
//! which binds a ciphertext to its tenant, cache key and format.

/// The AAD version byte.
const AAD_V3: u8 = 0x03;

/// `03` ‖ for each component: u32-BE byte length ‖ UTF-8 bytes.
///
/// Interop entries use 4 components (tenant, cache key, format, `"False"`);
/// cachekit-py's auto mode adds a fifth (`"True"` and the original type).
/// The length prefixes make the encoding unambiguous: no two lists of
/// components give the same bytes.
pub(crate) fn aad_v3(components: &[&str]) -> Vec<u8> {
    let len = 1 + components.iter().map(|c| 4 + c.len()).sum::<usize>();
    let mut aad = Vec::with_capacity(len);
    aad.push(AAD_V3);
    for component in components {
        // A cache key or format of 4 GiB is not a real input.
        let component_len =
            u32::try_from(component.len()).expect("an AAD component is under 4 GiB");
        aad.extend_from_slice(&component_len.to_be_bytes());
        aad.extend_from_slice(component.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interop_aad_matches_the_vector() {
        let aad = aad_v3(&[
            "default",
            "users:get_user:61598716255080080f6456eb065c2e51badfaa4320b0efe97469c29cffee8875",
            "msgpack",
            "False",
        ]);
        assert_eq!(
            hex::encode(aad),
            "030000000764656661756c740000004f75736572733a6765745f757365723a3631353938373136\
             3235353038303038306636343536656230363563326535316261646661613433323062306566\
             653937343639633239636666656538383735000000076d73677061636b0000000546616c7365"
        );
    }

    #[test]
    fn the_auto_mode_aad_has_five_framed_components() {
        let key = "ns:users:func:__main__.sec_user:args:\
                   3870b2ea5735ae639ded9450ef117768db676f037bec636503796c5b81095153:1s";
        let aad = aad_v3(&["default", key, "msgpack", "True", "msgpack"]);
        let mut expected = vec![3, 0, 0, 0, 7];
        expected.extend_from_slice(b"default");
        expected.extend_from_slice(&[0, 0, 0, 0x68]);
        expected.extend_from_slice(key.as_bytes());
        expected.extend_from_slice(b"\0\0\0\x07msgpack\0\0\0\x04True\0\0\0\x07msgpack");
        assert_eq!(aad, expected);
    }

    #[test]
    fn framing_keeps_component_boundaries() {
        assert_ne!(aad_v3(&["ab", "c"]), aad_v3(&["a", "bc"]));
        assert_eq!(aad_v3(&[]), vec![3]);
    }
}
