//! Reading back the few fields of a certificate berth needs: the CA's subject (to name it as
//! the issuer of new leaves, byte for byte), its public key (to check it belongs to
//! `ca.key`), its subject key identifier (so leaves' authority key identifier matches it) and
//! a leaf's issuer (for the self-check after loading). Plain DER walking with yasna, which
//! rcgen already uses; no general X.509 parser.
use rcgen::{DistinguishedName, DnType, DnValue};
use yasna::models::ObjectIdentifier;
use yasna::{ASN1Error, ASN1ErrorKind, Tag};

/// id-ce-subjectKeyIdentifier (2.5.29.14).
const SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];
/// id-at-commonName (2.5.4.3).
const COMMON_NAME: &[u64] = &[2, 5, 4, 3];

/// The parts of a certificate's TBSCertificate berth reads.
#[derive(Debug)]
pub(crate) struct CertFields {
    /// The issuer Name, full DER (tag and length included).
    pub issuer: Vec<u8>,
    /// The subject Name, full DER.
    pub subject: Vec<u8>,
    /// SubjectPublicKeyInfo, full DER.
    pub spki: Vec<u8>,
    /// The subject key identifier extension's key id, if present.
    pub subject_key_id: Option<Vec<u8>>,
}

/// Reads issuer, subject, public key and subject key id from a DER certificate.
pub(crate) fn cert_fields(cert_der: &[u8]) -> Result<CertFields, String> {
    yasna::parse_der(cert_der, |r| {
        r.read_sequence(|r| {
            let fields = r.next().read_sequence(|r| {
                // version [0] EXPLICIT, absent for v1
                r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                let _serial = r.next().read_der()?;
                let _signature = r.next().read_der()?;
                let issuer = r.next().read_der()?;
                let _validity = r.next().read_der()?;
                let subject = r.next().read_der()?;
                let spki = r.next().read_der()?;
                let mut subject_key_id = None;
                // issuerUniqueID [1], subjectUniqueID [2], extensions [3]
                while let Some(tagged) = r.read_optional(|r| r.read_tagged_der())? {
                    if tagged.tag() == Tag::context(3) {
                        subject_key_id = find_subject_key_id(tagged.value())?;
                    }
                }
                Ok(CertFields {
                    issuer,
                    subject,
                    spki,
                    subject_key_id,
                })
            })?;
            let _signature_algorithm = r.next().read_der()?;
            let _signature = r.next().read_der()?;
            Ok(fields)
        })
    })
    .map_err(|e| format!("not a DER X.509 certificate ({e})"))
}

/// Walks `Extensions ::= SEQUENCE OF Extension` (the contents of the `[3]` wrapper).
fn find_subject_key_id(extensions: &[u8]) -> Result<Option<Vec<u8>>, ASN1Error> {
    yasna::parse_der(extensions, |r| {
        let mut found = None;
        r.read_sequence_of(|r| {
            r.read_sequence(|r| {
                let oid = r.next().read_oid()?;
                r.read_optional(|r| r.read_bool())?;
                let value = r.next().read_bytes()?;
                if oid.components().as_slice() == SUBJECT_KEY_IDENTIFIER {
                    found = Some(yasna::parse_der(&value, |r| r.read_bytes())?);
                }
                Ok(())
            })
        })?;
        Ok(found)
    })
}

/// Turns a Name (full DER) into the rcgen form that writes the same bytes back: one
/// attribute per RDN, values as UTF8String or PrintableString, which is what rcgen (and so
/// berth) writes. Anything else is refused; the caller's self-check catches the rest.
pub(crate) fn distinguished_name(name_der: &[u8]) -> Result<DistinguishedName, String> {
    let entries = yasna::parse_der(name_der, |r| {
        let mut entries = Vec::new();
        r.read_sequence_of(|r| {
            let rdn = r.collect_set_of(|r| {
                r.read_sequence(|r| {
                    let oid = r.next().read_oid()?;
                    let value = read_dn_value(r.next())?;
                    Ok((oid, value))
                })
            })?;
            match <[_; 1]>::try_from(rdn) {
                Ok([entry]) => {
                    entries.push(entry);
                    Ok(())
                }
                // multi-valued RDNs: rcgen cannot write them back
                Err(_) => Err(ASN1Error::new(ASN1ErrorKind::Invalid)),
            }
        })?;
        Ok(entries)
    })
    .map_err(|e| format!("unsupported subject name ({e})"))?;
    let mut dn = DistinguishedName::new();
    for (oid, value) in entries {
        dn.push(dn_type(&oid), value);
    }
    Ok(dn)
}

fn read_dn_value(r: yasna::BERReader<'_, '_>) -> Result<DnValue, ASN1Error> {
    match r.lookahead_tag()? {
        yasna::tags::TAG_UTF8STRING => Ok(DnValue::Utf8String(r.read_utf8string()?)),
        yasna::tags::TAG_PRINTABLESTRING => {
            let s = r.read_printable_string()?;
            let s = s
                .try_into()
                .map_err(|_| ASN1Error::new(ASN1ErrorKind::Invalid))?;
            Ok(DnValue::PrintableString(s))
        }
        _ => Err(ASN1Error::new(ASN1ErrorKind::Invalid)),
    }
}

fn dn_type(oid: &ObjectIdentifier) -> DnType {
    if oid.components().as_slice() == COMMON_NAME {
        DnType::CommonName
    } else {
        // written back as the same OID
        DnType::CustomDnType(oid.components().clone())
    }
}

/// The common name of a distinguished name, if it has one as text.
pub(crate) fn common_name(dn: &DistinguishedName) -> Option<&str> {
    match dn.get(&DnType::CommonName)? {
        DnValue::Utf8String(s) => Some(s),
        DnValue::PrintableString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// An extension as (OID, critical, extnValue contents).
#[cfg(test)]
pub(crate) type Extension = (Vec<u64>, bool, Vec<u8>);

/// Every extension of a certificate.
#[cfg(test)]
pub(crate) fn extensions(cert_der: &[u8]) -> Result<Vec<Extension>, ASN1Error> {
    let wrapped = yasna::parse_der(cert_der, |r| {
        r.read_sequence(|r| {
            let tbs = r.next().read_sequence(|r| {
                let mut extensions = None;
                while let Some(v) = r.read_optional(|r| r.read_tagged_der())? {
                    if v.tag() == Tag::context(3) {
                        extensions = Some(v.value().to_vec());
                    }
                }
                Ok(extensions)
            })?;
            r.next().read_der()?;
            r.next().read_der()?;
            Ok(tbs)
        })
    })?;
    let Some(wrapped) = wrapped else {
        return Ok(Vec::new());
    };
    yasna::parse_der(&wrapped, |r| {
        r.collect_sequence_of(|r| {
            r.read_sequence(|r| {
                let oid = r.next().read_oid()?.components().clone();
                let critical = r.read_optional(|r| r.read_bool())?.unwrap_or(false);
                let value = r.next().read_bytes()?;
                Ok((oid, critical, value))
            })
        })
    })
}
