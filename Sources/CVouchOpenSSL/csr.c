// CSR parsing without OpenSSL 3's per-call decoder lookup.
//
// d2i_X509_REQ decodes the SubjectPublicKeyInfo through OSSL_DECODER_CTX_new_for_pkey, which
// enumerates every decoder and key manager of every provider on each call: about 60 µs, more
// than the signature check itself. The templates below read the same PKCS#10 structure with
// OpenSSL's ASN.1 engine but keep the key as its algorithm and bit string; EC keys are then
// imported directly (EVP_PKEY_fromdata), other key types through d2i_PUBKEY as before.
#include <openssl/asn1t.h>
#include <openssl/rsa.h>
#include <string.h>
#include "vouch_openssl.h"

struct vouch_spki_st {
    X509_ALGOR *algorithm;
    ASN1_BIT_STRING *key;
};

ASN1_SEQUENCE(VOUCH_SPKI) = {
    ASN1_SIMPLE(VOUCH_SPKI, algorithm, X509_ALGOR),
    ASN1_SIMPLE(VOUCH_SPKI, key, ASN1_BIT_STRING)
} ASN1_SEQUENCE_END(VOUCH_SPKI)

IMPLEMENT_ASN1_FUNCTIONS(VOUCH_SPKI)

typedef struct {
    ASN1_ENCODING encoding; /* the bytes as received: the signature covers exactly them */
    ASN1_INTEGER *version;
    X509_NAME *subject;
    VOUCH_SPKI *publicKey;
    STACK_OF(X509_ATTRIBUTE) *attributes;
} VOUCH_CSR_INFO;

ASN1_SEQUENCE_enc(VOUCH_CSR_INFO, encoding, 0) = {
    ASN1_SIMPLE(VOUCH_CSR_INFO, version, ASN1_INTEGER),
    ASN1_SIMPLE(VOUCH_CSR_INFO, subject, X509_NAME),
    ASN1_SIMPLE(VOUCH_CSR_INFO, publicKey, VOUCH_SPKI),
    /* Optional as in OpenSSL's own X509_REQ_INFO: some clients leave the empty set out. */
    ASN1_IMP_SET_OF_OPT(VOUCH_CSR_INFO, attributes, X509_ATTRIBUTE, 0)
} ASN1_SEQUENCE_END_enc(VOUCH_CSR_INFO, VOUCH_CSR_INFO)

struct vouch_csr_st {
    VOUCH_CSR_INFO *info;
    X509_ALGOR *signatureAlgorithm;
    ASN1_BIT_STRING *signature;
};

ASN1_SEQUENCE(VOUCH_CSR) = {
    ASN1_SIMPLE(VOUCH_CSR, info, VOUCH_CSR_INFO),
    ASN1_SIMPLE(VOUCH_CSR, signatureAlgorithm, X509_ALGOR),
    ASN1_SIMPLE(VOUCH_CSR, signature, ASN1_BIT_STRING)
} ASN1_SEQUENCE_END(VOUCH_CSR)

IMPLEMENT_ASN1_FUNCTIONS(VOUCH_CSR)

void *vouch_d2i_whole(const ASN1_ITEM *item, const unsigned char *der, long length) {
    const unsigned char *cursor = der;
    ASN1_VALUE *value = ASN1_item_d2i(NULL, &cursor, length, item);
    if (value != NULL && cursor != der + length) {
        ASN1_item_free(value, item);
        return NULL;
    }
    return value;
}

VOUCH_CSR *vouch_csr_parse(const unsigned char *der, long length) {
    // Trailing bytes after the DER structure mean it is not the CSR the client signed.
    return vouch_d2i_whole(ASN1_ITEM_rptr(VOUCH_CSR), der, length);
}

const VOUCH_SPKI *vouch_csr_get0_spki(const VOUCH_CSR *csr) { return csr->info->publicKey; }

/// An EC key from its named curve and point: no decoder lookup.
static EVP_PKEY *ec_key_from(const VOUCH_SPKI *spki) {
    const ASN1_OBJECT *parameterObject = NULL;
    int parameterType = V_ASN1_UNDEF;
    const void *parameter = NULL;
    X509_ALGOR_get0(&parameterObject, &parameterType, &parameter, spki->algorithm);
    if (parameterType != V_ASN1_OBJECT) return NULL; /* explicit curve parameters: not accepted */
    const char *group = OBJ_nid2sn(OBJ_obj2nid(parameter));
    if (group == NULL || spki->key->length <= 0 || (spki->key->flags & 0x07) != 0) return NULL; /* whole bytes only */
    /* The point at infinity (the one byte 0x00) imports, and every ECDSA signature "verifies" with
       it that anyone can compute: it is no key, and the request would prove possession of nothing. */
    if (spki->key->data[0] == 0x00) return NULL;
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (context == NULL) return NULL;
    OSSL_PARAM parameters[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, spki->key->data, (size_t)spki->key->length),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *key = NULL;
    if (EVP_PKEY_fromdata_init(context) != 1 || EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, parameters) != 1) {
        key = NULL;
    }
    EVP_PKEY_CTX_free(context);
    return key;
}

EVP_PKEY *vouch_spki_public_key(const VOUCH_SPKI *spki) {
    const ASN1_OBJECT *algorithm = NULL;
    X509_ALGOR_get0(&algorithm, NULL, NULL, spki->algorithm);
    if (OBJ_obj2nid(algorithm) == NID_X9_62_id_ecPublicKey) return ec_key_from(spki);
    // RSA, Ed25519 and the rest: rare in CSRs, decoded the general way.
    unsigned char *der = NULL;
    int length = i2d_VOUCH_SPKI(spki, &der);
    if (length <= 0) return NULL;
    const unsigned char *cursor = der;
    EVP_PKEY *key = d2i_PUBKEY(NULL, &cursor, length);
    OPENSSL_free(der);
    return key;
}

VOUCH_SPKI *vouch_spki_parse(const unsigned char *der, long length) {
    return vouch_d2i_whole(ASN1_ITEM_rptr(VOUCH_SPKI), der, length);
}

int vouch_spki_der(const VOUCH_SPKI *spki, unsigned char **out) { return i2d_VOUCH_SPKI(spki, out); }

void vouch_spki_free(VOUCH_SPKI *spki) { VOUCH_SPKI_free(spki); }

int vouch_csr_verify(const VOUCH_CSR *csr, EVP_PKEY *key) {
    return ASN1_item_verify(ASN1_ITEM_rptr(VOUCH_CSR_INFO), csr->signatureAlgorithm, csr->signature, csr->info, key);
}

int vouch_csr_signature_digest(const VOUCH_CSR *csr) {
    const ASN1_OBJECT *algorithm = NULL;
    int parameterType = V_ASN1_UNDEF;
    const void *parameter = NULL;
    X509_ALGOR_get0(&algorithm, &parameterType, &parameter, csr->signatureAlgorithm);
    int nid = OBJ_obj2nid(algorithm);
    if (nid == NID_rsassaPss) {
        // RSA-PSS names its digest in its parameters, SHA-1 when they name none (RFC 4055).
        if (parameterType != V_ASN1_SEQUENCE) return -1;
        const ASN1_STRING *sequence = parameter;
        const unsigned char *cursor = sequence->data;
        RSA_PSS_PARAMS *pss = d2i_RSA_PSS_PARAMS(NULL, &cursor, sequence->length);
        if (pss == NULL) return -1;
        int digest = pss->hashAlgorithm == NULL ? NID_sha1 : OBJ_obj2nid(pss->hashAlgorithm->algorithm);
        RSA_PSS_PARAMS_free(pss);
        return digest;
    }
    int digest = NID_undef, keyType = NID_undef;
    return OBJ_find_sigid_algs(nid, &digest, &keyType) ? digest : -1;
}

GENERAL_NAMES *vouch_csr_subject_alt_names(const VOUCH_CSR *csr) {
    // As X509_REQ_get_extensions: the extensionRequest attribute (or Microsoft's older one).
    static const int attributeNIDs[] = { NID_ext_req, NID_ms_ext_req };
    const STACK_OF(X509_ATTRIBUTE) *attributes = csr->info->attributes;
    for (size_t i = 0; i < sizeof attributeNIDs / sizeof attributeNIDs[0]; i++) {
        int index = X509at_get_attr_by_NID(attributes, attributeNIDs[i], -1);
        if (index < 0) continue;
        ASN1_TYPE *value = X509_ATTRIBUTE_get0_type(X509at_get_attr(attributes, index), 0);
        if (value == NULL || value->type != V_ASN1_SEQUENCE) return NULL;
        const unsigned char *cursor = value->value.sequence->data;
        STACK_OF(X509_EXTENSION) *extensions = (STACK_OF(X509_EXTENSION) *)ASN1_item_d2i(
            NULL, &cursor, value->value.sequence->length, ASN1_ITEM_rptr(X509_EXTENSIONS));
        if (extensions == NULL) return NULL;
        GENERAL_NAMES *names = X509V3_get_d2i(extensions, NID_subject_alt_name, NULL, NULL);
        sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
        return names;
    }
    return NULL;
}

int vouch_x509_copy_spki(X509 *cert, const VOUCH_SPKI *spki) {
    X509_PUBKEY *target = X509_get_X509_PUBKEY(cert);
    const ASN1_OBJECT *algorithm = NULL;
    const ASN1_OBJECT *parameterObject = NULL;
    int parameterType = V_ASN1_UNDEF;
    const void *parameter = NULL;
    X509_ALGOR_get0(&algorithm, &parameterType, &parameter, spki->algorithm);
    (void)parameterObject;
    void *parameterCopy = NULL;
    switch (parameterType) {
    case V_ASN1_OBJECT: /* EC: the named curve */
        parameterCopy = OBJ_dup(parameter);
        break;
    case V_ASN1_SEQUENCE: /* explicit parameters, e.g. RSA-PSS */
        parameterCopy = ASN1_STRING_dup(parameter);
        break;
    case V_ASN1_NULL: /* RSA */
    case V_ASN1_UNDEF: /* Ed25519 */
        break;
    default:
        return 0;
    }
    ASN1_OBJECT *algorithmCopy = OBJ_dup(algorithm);
    unsigned char *keyCopy = OPENSSL_memdup(spki->key->data, (size_t)spki->key->length);
    if (target == NULL || algorithmCopy == NULL || keyCopy == NULL
        || (parameter != NULL && parameterCopy == NULL && parameterType != V_ASN1_NULL)
        || !X509_PUBKEY_set0_param(target, algorithmCopy, parameterType, parameterCopy, keyCopy, spki->key->length)) {
        ASN1_OBJECT_free(algorithmCopy);
        OPENSSL_free(keyCopy);
        if (parameterType == V_ASN1_OBJECT) ASN1_OBJECT_free(parameterCopy);
        if (parameterType == V_ASN1_SEQUENCE) ASN1_STRING_free(parameterCopy);
        return 0;
    }
    return 1;
}
