// Vouch's shim over system OpenSSL 3 libcrypto: the headers Vouch needs, plus
// small functions for what Swift cannot import (function-like macros and
// typed STACK_OF helpers).
#ifndef VOUCH_OPENSSL_H
#define VOUCH_OPENSSL_H
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/// OPENSSL_free.
void vouch_openssl_free(void *ptr);

/// BIO_get_mem_data: points *data at the BIO's buffer and returns its length.
long vouch_bio_mem_data(BIO *bio, char **data);

/// The subjectAltName of a certificate, or NULL. Free with vouch_general_names_free.
GENERAL_NAMES *vouch_x509_subject_alt_names(const X509 *cert);
int vouch_general_names_count(const GENERAL_NAMES *names);
/// The type (GEN_URI, GEN_DNS, GEN_IPADD, ...) of name i, with its raw bytes in *data/*length.
/// Returns -1 for a type without a string value.
int vouch_general_name_at(const GENERAL_NAMES *names, int i, const unsigned char **data, int *length);
void vouch_general_names_free(GENERAL_NAMES *names);

/// Adds one extension (e.g. subjectAltName) to a CSR's extension request.
int vouch_req_add_extension(X509_REQ *req, X509_EXTENSION *ext);

/// Decodes `item` from exactly `length` bytes: NULL when they are not one whole DER value (bytes
/// after it mean it is not what was signed or asked). Free with ASN1_item_free (or the type's _free).
void *vouch_d2i_whole(const ASN1_ITEM *item, const unsigned char *der, long length);

/// A PKCS#10 request as received (csr.c): read with OpenSSL's ASN.1 engine, its key kept
/// encoded, so no call goes through OpenSSL 3's decoder lookup. Free with VOUCH_CSR_free.
typedef struct vouch_csr_st VOUCH_CSR;
/// A SubjectPublicKeyInfo kept as its algorithm and key bits. Free with vouch_spki_free.
typedef struct vouch_spki_st VOUCH_SPKI;
/// Parses a DER CSR; NULL if it is not one or bytes follow it.
VOUCH_CSR *vouch_csr_parse(const unsigned char *der, long length);
void VOUCH_CSR_free(VOUCH_CSR *csr);
/// The CSR's SubjectPublicKeyInfo, owned by the CSR.
const VOUCH_SPKI *vouch_csr_get0_spki(const VOUCH_CSR *csr);
/// 1 when the CSR's signature over its request info verifies with `key`.
int vouch_csr_verify(const VOUCH_CSR *csr, EVP_PKEY *key);
/// The NID of the digest the CSR's signature uses (for RSA-PSS the one its parameters name);
/// NID_undef for a signature scheme without a separate digest (Ed25519, Ed448); -1 when unknown.
int vouch_csr_signature_digest(const VOUCH_CSR *csr);
/// The subjectAltName requested in the CSR's extensions, or NULL. Free with vouch_general_names_free.
GENERAL_NAMES *vouch_csr_subject_alt_names(const VOUCH_CSR *csr);
/// Parses a DER SubjectPublicKeyInfo; NULL if it is not one or bytes follow it.
VOUCH_SPKI *vouch_spki_parse(const unsigned char *der, long length);
void vouch_spki_free(VOUCH_SPKI *spki);
/// The key of a SubjectPublicKeyInfo (EC imported directly; other types through d2i_PUBKEY),
/// or NULL when it is not a usable key. Free with EVP_PKEY_free.
EVP_PKEY *vouch_spki_public_key(const VOUCH_SPKI *spki);
/// DER of a SubjectPublicKeyInfo (i2d conventions).
int vouch_spki_der(const VOUCH_SPKI *spki, unsigned char **out);
/// Copies a SubjectPublicKeyInfo into a certificate as encoded, without decoding and
/// re-encoding the key (OpenSSL 3's encoder lookup is the costly part of X509_set_pubkey). 1 on success.
int vouch_x509_copy_spki(X509 *cert, const VOUCH_SPKI *spki);

/// Parses a DER OCSP request; NULL if it is not one. Free with OCSP_REQUEST_free.
OCSP_REQUEST *vouch_ocsp_request_parse(const unsigned char *der, long length);
int vouch_ocsp_request_count(OCSP_REQUEST *request);
/// The serial of single request i, owned by the request (NULL on error); *issued_by_us is 1
/// when its issuer name and key hashes match `issuer`.
const ASN1_INTEGER *vouch_ocsp_request_serial(OCSP_REQUEST *request, int i, X509 *issuer, int *issued_by_us);
/// Builds and signs a successful OCSP response, one status per single request
/// (V_OCSP_CERTSTATUS_GOOD/REVOKED/UNKNOWN), copying the nonce. Returns the DER length
/// and sets *out (free with vouch_openssl_free), or -1.
int vouch_ocsp_response_build(OCSP_REQUEST *request, X509 *signer, EVP_PKEY *key, const int *statuses,
                              const long *revoked_at, const int *reasons, long this_update, long next_update,
                              unsigned char **out);
/// A DER OCSP response carrying only an error status (e.g. OCSP_RESPONSE_STATUS_MALFORMEDREQUEST).
int vouch_ocsp_error_response(int status, unsigned char **out);
/// A PKCS#12 keystore (DER) for Java and other PKCS#12 readers: the PKCS#8 key `key_pem`, its
/// certificate `cert_pem` and the intermediates in `chain_pem` (PEM, may be empty), one entry
/// named `alias`; AES-256-CBC with PBKDF2 (hmacWithSHA256), MAC SHA-256. Returns the length and
/// sets *out (free with vouch_openssl_free), or -1.
int vouch_pkcs12_keystore(const char *key_pem, const char *cert_pem, const char *chain_pem, const char *password,
                          const char *alias, unsigned char **out);
/// A PKCS#12 truststore (DER): each certificate of `certs_pem` as a certificate bag named
/// `<alias_prefix><serial in hex>` carrying Oracle's trusted-key-usage attribute
/// (2.16.840.1.113894.746875.1.1 = anyExtendedKeyUsage), without which Java lists no entry.
/// Same encryption and MAC as the keystore. Returns the length and sets *out, or -1.
int vouch_pkcs12_truststore(const char *certs_pem, const char *password, const char *alias_prefix, unsigned char **out);
/* CA keys in a PKCS#11 token (pkcs11.c). A token key is an EVP_PKEY whose signatures are made by
   C_Sign in the token; it holds no private key material. `err` receives a sentence on failure. */
typedef struct vouch_p11_token vouch_p11_token;
#define VOUCH_P11_OK 0
#define VOUCH_P11_FAILED 1
#define VOUCH_P11_PIN_REFUSED 2
/// Loads the module (once per path in the process), finds the token by label and logs in once.
vouch_p11_token *vouch_p11_open(const char *module_path, const char *token_label, const char *pin, char *err,
                                size_t errlen);
/// Closes the token's sessions; the module is finalized with its last token. No key of it may sign after.
void vouch_p11_close(vouch_p11_token *token);
const char *vouch_p11_token_label(const vouch_p11_token *token);
/// The private key with CKA_ID `id` (and CKA_LABEL `label` unless NULL), checked: EC P-256/P-384,
/// may sign, sensitive, not extractable, with a public key object of the same id. A new reference.
EVP_PKEY *vouch_p11_find_key(vouch_p11_token *token, const unsigned char *id, size_t id_len, const char *label,
                             char *err, size_t errlen);
/// Generates a key pair in the token (NID_X9_62_prime256v1 or NID_secp384r1). 0 on success.
int vouch_p11_generate(vouch_p11_token *token, int nid, const char *label, const unsigned char *id, size_t id_len,
                       char *err, size_t errlen);
/// Deletes the private and public key objects with CKA_ID `id`. 0 on success.
int vouch_p11_destroy(vouch_p11_token *token, const unsigned char *id, size_t id_len, char *err, size_t errlen);
/// VOUCH_P11_*; for a failed token, the CK_RV, when it first failed (Unix time) and why.
int vouch_p11_status(vouch_p11_token *token, unsigned long *rv, long *since, char *reason, size_t reason_len);
/// Checks the token answers (reads CKA_SIGN of each key, no signature); marks it failed if not.
int vouch_p11_probe(vouch_p11_token *token);
/// Re-initializes the token's module, logs in once, finds every key again and checks its point.
int vouch_p11_recover(vouch_p11_token *token);
/// The CK_RV of this thread's last failed token signature (0 if none), and clears it.
unsigned long vouch_p11_take_sign_error(void);
const char *vouch_p11_rv_name(unsigned long rv);
/// Signs a random message with `key` and verifies it with its public key: 1 when the token's private
/// key is the one its public key object says (the public point alone proves nothing).
int vouch_p11_self_test(EVP_PKEY *key);
/// 1 when `key` is a token key, with its token's label.
int vouch_p11_is_token_key(EVP_PKEY *key, const char **label);
#endif
