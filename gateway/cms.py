"""CMS (RFC 5652) structures for S/MIME, written as a stream.

cryptography's PKCS7 builders are one-shot (the whole message and several copies
of it in memory) and offer neither AuthEnvelopedData nor a choice of recipient
identifier. Here the small, fixed parts (RecipientInfos, algorithm identifiers,
SignerInfo) are built with asn1crypto, and the large part, the encrypted content,
is streamed: with AES-CBC and PKCS#7 padding (RFC 5652 §6.3) or AES-GCM
(RFC 5084) the ciphertext length is known before the first byte is encrypted, so
every enclosing DER length is definite and computed up front.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class SmimeError(Exception):
    """A CMS structure cannot be built from what was given (key type, missing SKI, ...)."""


class ContentCipher(enum.StrEnum):
    AES256_CBC = "aes256-cbc"  # EnvelopedData; what every client reads
    AES256_GCM = "aes256-gcm"  # AuthEnvelopedData (RFC 5083); not Outlook


class KeyTransport(enum.StrEnum):
    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_OAEP = "rsa-oaep"  # RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 8017, RFC 4055)


class RecipientIdentifier(enum.StrEnum):
    ISSUER_SERIAL = "issuer-serial"
    SKI = "ski"


# OIDs spelled out where asn1crypto has no name for them.
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"  # RFC 5083
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_OID_AES256_GCM = "2.16.840.1.101.3.4.1.46"  # RFC 5084 §3.2

AES_KEY_BYTES = 32
GCM_NONCE_BYTES = 12  # RFC 5084 §3.2: 12 octets RECOMMENDED
GCM_TAG_BYTES = 16


def der_length(length: int) -> bytes:
    """X.690 §8.1.3: short form below 128, else long form."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv_header(tag: int, length: int) -> bytes:
    return bytes([tag]) + der_length(length)


def tlv(tag: int, content: bytes) -> bytes:
    return tlv_header(tag, len(content)) + content


# id-RSAES-OAEP with RSAES-OAEP-params naming SHA-256 for the hash and for MGF1
# (RFC 4055 §4.1; pSourceFunc at its default, the empty label). The SHA-256
# AlgorithmIdentifiers carry no parameters: RFC 4055 §2.1 says they SHOULD be
# absent, and OpenSSL writes them so.
_SHA256_ALG = tlv(0x30, core.ObjectIdentifier("2.16.840.1.101.3.4.2.1").dump())
_RSAES_OAEP_SHA256 = tlv(
    0x30,
    core.ObjectIdentifier("1.2.840.113549.1.1.7").dump()
    + tlv(
        0x30,
        tlv(0xA0, _SHA256_ALG)
        + tlv(0xA1, tlv(0x30, core.ObjectIdentifier("1.2.840.113549.1.1.8").dump() + _SHA256_ALG)),
    ),
)


def ciphertext_length(cipher: ContentCipher, plaintext_length: int) -> int:
    if cipher is ContentCipher.AES256_CBC:
        # PKCS#7 padding always adds 1..16 octets (RFC 5652 §6.3).
        return (plaintext_length // 16 + 1) * 16
    return plaintext_length


def _asn1_certificate(cert: x509.Certificate) -> asn1_x509.Certificate:
    # Reuse the certificate's own encoding so issuer names match byte for byte.
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def key_trans_recipient_info(
    cert: x509.Certificate,
    content_key: bytes,
    key_transport: KeyTransport,
    identifier: RecipientIdentifier,
) -> tuple[bytes, int]:
    """A KeyTransRecipientInfo (RFC 5652 §6.2.1) as DER, and its version.

    A certificate without a subjectKeyIdentifier extension is addressed by
    issuerAndSerialNumber even when SKI is asked for: the recipient's client can
    only match an SKI it finds in its certificate.
    """
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SmimeError(
            f"recipient certificate {cert.subject.rfc4514_string()} has a "
            f"{type(public_key).__name__} key; only RSA key transport is supported"
        )
    ski = subject_key_identifier(cert) if identifier is RecipientIdentifier.SKI else None
    if ski is not None:
        # RFC 5652 §6.2.1: version 2 with subjectKeyIdentifier.
        version, rid = "v2", cms.RecipientIdentifier({"subject_key_identifier": ski})
    else:
        asn1_cert = _asn1_certificate(cert)
        version = "v0"
        rid = cms.RecipientIdentifier(
            {
                "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                    {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
                )
            }
        )
    if key_transport is KeyTransport.RSA_OAEP:
        encrypted = public_key.encrypt(
            content_key,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        algorithm = cms.KeyEncryptionAlgorithm.load(_RSAES_OAEP_SHA256)
    else:
        encrypted = public_key.encrypt(content_key, padding.PKCS1v15())
        # rsaEncryption with explicit NULL parameters, as RFC 3370 §4.2.1 shows
        # and as OpenSSL, Outlook and gpgsm write it.
        algorithm = cms.KeyEncryptionAlgorithm(
            {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()}
        )
    ktri = cms.KeyTransRecipientInfo(
        {
            "version": version,
            "rid": rid,
            "key_encryption_algorithm": algorithm,
            "encrypted_key": encrypted,
        }
    )
    return cms.RecipientInfo({"ktri": ktri}).dump(), 0 if version == "v0" else 2


@dataclass(frozen=True)
class EnvelopeFrame:
    """The DER around the streamed ciphertext: prefix, then ciphertext, then suffix."""

    prefix: bytes
    ciphertext_length: int
    suffix_length: int  # GCM: the mac OCTET STRING after the ciphertext

    @property
    def total_length(self) -> int:
        return len(self.prefix) + self.ciphertext_length + self.suffix_length


def envelope_frame(
    cipher: ContentCipher,
    recipient_infos: Sequence[tuple[bytes, int]],
    iv_or_nonce: bytes,
    plaintext_length: int,
) -> EnvelopeFrame:
    """ContentInfo { EnvelopedData | AuthEnvelopedData } up to the first ciphertext octet."""
    if not recipient_infos:
        raise SmimeError("at least one recipient is needed")
    clen = ciphertext_length(cipher, plaintext_length)
    if cipher is ContentCipher.AES256_CBC:
        alg = core.ObjectIdentifier(_OID_AES256_CBC).dump() + core.OctetString(iv_or_nonce).dump()
        content_type = _OID_ENVELOPED_DATA
        # RFC 5652 §6.1: version 0 when every RecipientInfo is version 0 and
        # there is no originatorInfo or unprotectedAttrs; otherwise 2.
        version = 0 if all(v == 0 for _, v in recipient_infos) else 2
        suffix = 0
    else:
        # GCMParameters (RFC 5084 §3.2) with the ICV length written out, as
        # OpenSSL does: 16 octets.
        params = tlv(
            0x30, core.OctetString(iv_or_nonce).dump() + core.Integer(GCM_TAG_BYTES).dump()
        )
        alg = core.ObjectIdentifier(_OID_AES256_GCM).dump() + params
        content_type = _OID_AUTH_ENVELOPED_DATA
        version = 0  # RFC 5083 §2.1: always 0
        suffix = len(tlv_header(0x04, GCM_TAG_BYTES)) + GCM_TAG_BYTES
    encrypted_content_info_head = (
        core.ObjectIdentifier(_OID_DATA).dump()
        + tlv(0x30, alg)
        + tlv_header(0x80, clen)  # [0] IMPLICIT OCTET STRING, primitive, definite
    )
    eci_length = len(encrypted_content_info_head) + clen
    inner_head = (
        core.Integer(version).dump()
        # In the caller's order, not DER-sorted: gpgsm 2.2 (2.2.40 measured) tries
        # RecipientInfos in order and logs an error for each one before its own (no
        # secret key, or certificate not found); it then decrypts with its own, writes
        # the whole plaintext and DECRYPTION_OKAY, but exits 2 because errors were
        # logged. Only the first RecipientInfo's owner sees exit 0, so the primary
        # recipient comes first and the organisation last; a later To/Cc recipient
        # reading with gpgsm sees exit 2 (test_smime_gpgsm.py pins this down).
        # (RFC 5652 requires DER only for signed attributes; OpenSSL does not sort.)
        + tlv(0x31, b"".join(ri for ri, _ in recipient_infos))
        + tlv_header(0x30, eci_length)
        + encrypted_content_info_head
    )
    enveloped_length = len(inner_head) + clen + suffix
    enveloped_head = tlv_header(0x30, enveloped_length)
    explicit_length = len(enveloped_head) + enveloped_length  # [0] EXPLICIT content
    content_info_head = core.ObjectIdentifier(content_type).dump() + tlv_header(0xA0, explicit_length)
    prefix = (
        tlv_header(0x30, len(content_info_head) + explicit_length)
        + content_info_head
        + enveloped_head
        + inner_head
    )
    return EnvelopeFrame(prefix=prefix, ciphertext_length=clen, suffix_length=suffix)


class ContentEncryptor:
    """Encrypts the content in chunks; `finish()` returns the last ciphertext and the suffix.

    The key and IV/nonce are fresh from os.urandom for every message (RFC 5652
    §6.3, RFC 5084 §1.5: a GCM nonce must never repeat under one key).
    """

    def __init__(self, cipher: ContentCipher) -> None:
        self.cipher = cipher
        self.key = os.urandom(AES_KEY_BYTES)
        if cipher is ContentCipher.AES256_CBC:
            self.iv = os.urandom(16)
            self._ctx = Cipher(algorithms.AES(self.key), modes.CBC(self.iv)).encryptor()
        else:
            self.iv = os.urandom(GCM_NONCE_BYTES)
            self._gcm = Cipher(algorithms.AES(self.key), modes.GCM(self.iv)).encryptor()
            self._ctx = self._gcm
        self._count = 0

    @property
    def octets(self) -> int:
        """Plaintext octets encrypted so far."""
        return self._count

    def update(self, data: bytes) -> bytes:
        self._count += len(data)
        return self._ctx.update(data)

    def finish(self) -> bytes:
        if self.cipher is ContentCipher.AES256_CBC:
            pad = 16 - self._count % 16
            return self._ctx.update(bytes([pad]) * pad) + self._ctx.finalize()
        last = self._gcm.finalize()
        return last + tlv(0x04, self._gcm.tag)


# --- SignedData (RFC 5652 §5) for multipart/signed (RFC 8551 §3.5.3) ---

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def detached_signature(
    content_digest: bytes,
    certificate: x509.Certificate,
    key: SignerKey,
    chain: Sequence[x509.Certificate] = (),
    signing_time: datetime | None = None,
) -> bytes:
    """A detached SignedData over content whose SHA-256 is `content_digest`, as DER."""
    when = signing_time or datetime.now(UTC).replace(microsecond=0)
    asn1_cert = _asn1_certificate(certificate)
    attributes = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": when})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [content_digest]}),
        # RFC 8551 §2.5.2: tell the correspondent what we can decrypt.
        cms.CMSAttribute(
            {
                "type": "smime_capabilities",
                "values": [
                    [
                        {"capability_id": _OID_AES256_GCM},
                        {"capability_id": _OID_AES256_CBC},
                    ]
                ],
            }
        ),
    ]
    # DER orders a SET OF by encoding; OpenSSL re-encodes signedAttrs before
    # verifying, so an unsorted SET would not verify there.
    attributes.sort(key=lambda a: a.dump())
    signed_attrs = cms.CMSAttributes(attributes)
    to_sign = signed_attrs.dump()  # the SET OF tag, not [0] (RFC 5652 §5.4)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = {"algorithm": "rsassa_pkcs1v15"}
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        signature_algorithm = {"algorithm": "sha256_ecdsa"}
    else:  # pragma: no cover - typing keeps this out
        raise SmimeError(f"unsupported signing key {type(key).__name__}")
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": signature_algorithm,
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data"},
            "certificates": [asn1_cert, *(_asn1_certificate(c) for c in chain)],
            "signer_infos": [signer_info],
        }
    )
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


def sha256_of(chunks: Iterable[bytes]) -> bytes:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()

