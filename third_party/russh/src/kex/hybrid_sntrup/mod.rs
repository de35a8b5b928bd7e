//! `sntrup761x25519-sha512` (and its original name
//! `sntrup761x25519-sha512@openssh.com`): the hybrid of Streamlined NTRU
//! Prime sntrup761 and X25519 that OpenSSH 9.0 made its default.
//!
//! Wire format (OpenSSH's PROTOCOL and kexsntrup761x25519.c,
//! draft-josefsson-ntruprime-ssh):
//!
//! | message | content | bytes |
//! |---|---|---|
//! | SSH_MSG_KEX_ECDH_INIT (30) | string Q_C = sntrup761 public key ‖ X25519 public key | 1158 + 32 |
//! | SSH_MSG_KEX_ECDH_REPLY (31) | string Q_S = sntrup761 ciphertext ‖ X25519 public key | 1039 + 32 |
//!
//! The shared secret is K = SHA-512(sntrup761 key (32) ‖ X25519 secret (32)),
//! encoded as an SSH *string* (not an mpint) both in the exchange hash and in
//! key derivation; the exchange hash is SHA-512.
//!
//! Refused peer input: a Q_C or Q_S of any other length, and an all-zero
//! X25519 result (a low-order point), as OpenSSH does. Every 1039-byte string
//! is a well-formed ciphertext: sntrup761 decapsulation uses implicit
//! rejection, so a tampered ciphertext gives an unrelated key and the host
//! key signature over the exchange hash then fails.

use curve25519_dalek::montgomery::MontgomeryPoint;
use log::debug;
use pqcrypto_ntruprime::sntrup761;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SharedSecret as _};
use sha2::Digest;
use ssh_encoding::{Encode, Writer};
use zeroize::Zeroizing;

mod secret;
use secret::{COMBINED_SECRET_SIZE, combine_secrets};

use super::{KexAlgorithm, KexAlgorithmImplementor, KexType, SharedSecret, compute_keys};
use crate::mac;
use crate::session::Exchange;
use crate::{CryptoVec, Error, cipher, msg};

const SNTRUP761_PUBLIC_KEY_SIZE: usize = 1158;
const SNTRUP761_CIPHERTEXT_SIZE: usize = 1039;
const X25519_PUBLIC_KEY_SIZE: usize = 32;

pub struct Sntrup761X25519KexType {}

impl KexType for Sntrup761X25519KexType {
    fn make(&self) -> KexAlgorithm {
        Sntrup761X25519Kex::default().into()
    }
}

#[doc(hidden)]
#[derive(Default)]
pub struct Sntrup761X25519Kex {
    /// Client only, between sending Q_C and receiving Q_S.
    sntrup_secret: Option<Box<sntrup761::SecretKey>>,
    /// Client only, between sending Q_C and receiving Q_S.
    x25519_secret: Option<Zeroizing<[u8; 32]>>,
    /// K, once both halves are known.
    shared_secret: Option<Zeroizing<[u8; COMBINED_SECRET_SIZE]>>,
}

impl std::fmt::Debug for Sntrup761X25519Kex {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Sntrup761X25519Kex {{ sntrup_secret: [hidden], x25519_secret: [hidden], shared_secret: [hidden] }}",
        )
    }
}

/// K, wiped when dropped.
fn combined_secret(
    sntrup_key: &[u8],
    x25519_secret: &[u8; 32],
) -> Zeroizing<[u8; COMBINED_SECRET_SIZE]> {
    Zeroizing::new(combine_secrets(sntrup_key, x25519_secret))
}

/// X25519 with the peer's public key, refusing the all-zero result.
fn x25519_agree(peer_public: &[u8], our_secret: &[u8; 32]) -> Result<[u8; 32], Error> {
    let mut point = MontgomeryPoint([0; 32]);
    if peer_public.len() != X25519_PUBLIC_KEY_SIZE {
        return Err(Error::Kex);
    }
    point.0.copy_from_slice(peer_public);
    let shared = point.mul_clamped(*our_secret);
    if shared.0 == [0u8; 32] {
        debug!("peer sent a low-order curve25519 pubkey");
        return Err(Error::Kex);
    }
    Ok(shared.0)
}

impl KexAlgorithmImplementor for Sntrup761X25519Kex {
    fn skip_exchange(&self) -> bool {
        false
    }

    fn server_dh(&mut self, exchange: &mut Exchange, payload: &[u8]) -> Result<(), Error> {
        debug!("server_dh (hybrid sntrup761x25519)");

        let (&kind, rest) = payload.split_first().ok_or(Error::Inconsistent)?;
        if kind != msg::KEX_ECDH_INIT {
            return Err(Error::Inconsistent);
        }
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(Error::Inconsistent)?;
        let q_c = rest
            .get(..u32::from_be_bytes(*len) as usize)
            .ok_or(Error::Inconsistent)?;
        if q_c.len() != SNTRUP761_PUBLIC_KEY_SIZE + X25519_PUBLIC_KEY_SIZE {
            return Err(Error::Kex);
        }
        let (client_sntrup_pk, client_x25519_pk) = q_c.split_at(SNTRUP761_PUBLIC_KEY_SIZE);

        // X25519 first: it is the half that can refuse the peer's input, so a
        // bad Q_C costs no encapsulation.
        let server_secret = Zeroizing::new(rand::random::<[u8; 32]>());
        let server_x25519_pk = MontgomeryPoint::mul_base_clamped(*server_secret);
        let x25519_shared = Zeroizing::new(x25519_agree(client_x25519_pk, &server_secret)?);

        let client_sntrup_pk =
            sntrup761::PublicKey::from_bytes(client_sntrup_pk).map_err(|_| Error::Kex)?;
        let (sntrup_key, ciphertext) = sntrup761::encapsulate(&client_sntrup_pk);

        exchange.server_ephemeral.clear();
        exchange
            .server_ephemeral
            .extend_from_slice(ciphertext.as_bytes());
        exchange
            .server_ephemeral
            .extend_from_slice(&server_x25519_pk.0);

        self.shared_secret = Some(combined_secret(sntrup_key.as_bytes(), &x25519_shared));
        Ok(())
    }

    fn client_dh(
        &mut self,
        client_ephemeral: &mut Vec<u8>,
        writer: &mut impl Writer,
    ) -> Result<(), Error> {
        let (sntrup_pk, sntrup_sk) = sntrup761::keypair();
        let x25519_secret = Zeroizing::new(rand::random::<[u8; 32]>());
        let x25519_pk = MontgomeryPoint::mul_base_clamped(*x25519_secret);

        client_ephemeral.clear();
        client_ephemeral.extend_from_slice(sntrup_pk.as_bytes());
        client_ephemeral.extend_from_slice(&x25519_pk.0);

        msg::KEX_ECDH_INIT.encode(writer)?;
        client_ephemeral.as_slice().encode(writer)?;

        self.sntrup_secret = Some(Box::new(sntrup_sk));
        self.x25519_secret = Some(x25519_secret);
        Ok(())
    }

    fn compute_shared_secret(&mut self, remote_pubkey_: &[u8]) -> Result<(), Error> {
        if remote_pubkey_.len() != SNTRUP761_CIPHERTEXT_SIZE + X25519_PUBLIC_KEY_SIZE {
            return Err(Error::Kex);
        }
        let (ciphertext, server_x25519_pk) = remote_pubkey_.split_at(SNTRUP761_CIPHERTEXT_SIZE);

        let x25519_secret = self.x25519_secret.take().ok_or(Error::KexInit)?;
        let sntrup_secret = self.sntrup_secret.take().ok_or(Error::KexInit)?;
        let x25519_shared = Zeroizing::new(x25519_agree(server_x25519_pk, &x25519_secret)?);

        let ciphertext = sntrup761::Ciphertext::from_bytes(ciphertext).map_err(|_| Error::Kex)?;
        let sntrup_key = sntrup761::decapsulate(&ciphertext, &sntrup_secret);

        self.shared_secret = Some(combined_secret(sntrup_key.as_bytes(), &x25519_shared));
        Ok(())
    }

    /// K itself (the SHA-512 of both halves), the value both key derivation
    /// and the exchange hash use.
    fn shared_secret_bytes(&self) -> Option<&[u8]> {
        self.shared_secret.as_ref().map(|k| k.as_slice())
    }

    fn compute_exchange_hash(
        &self,
        key: &[u8],
        exchange: &Exchange,
        buffer: &mut CryptoVec,
    ) -> Result<Vec<u8>, Error> {
        buffer.clear();
        exchange.client_id.encode(buffer)?;
        exchange.server_id.encode(buffer)?;
        exchange.client_kex_init.encode(buffer)?;
        exchange.server_kex_init.encode(buffer)?;

        buffer.extend(key);

        exchange.client_ephemeral.encode(buffer)?;
        exchange.server_ephemeral.encode(buffer)?;

        let k = self.shared_secret.as_ref().ok_or(Error::KexInit)?;
        k.as_slice().encode(buffer)?;

        let mut hasher = sha2::Sha512::new();
        hasher.update(&buffer);
        Ok(hasher.finalize().to_vec())
    }

    fn compute_keys(
        &self,
        session_id: &[u8],
        exchange_hash: &[u8],
        cipher: cipher::Name,
        remote_to_local_mac: mac::Name,
        local_to_remote_mac: mac::Name,
        is_server: bool,
    ) -> Result<super::cipher::CipherPair, Error> {
        let k = self.shared_secret.as_ref().ok_or(Error::KexInit)?;
        let shared_secret = SharedSecret::from_string(k.as_slice())?;

        compute_keys::<sha2::Sha512>(
            Some(&shared_secret),
            session_id,
            exchange_hash,
            cipher,
            remote_to_local_mac,
            local_to_remote_mac,
            is_server,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Known answer: K for sntrup761 key 00 01 .. 1f and X25519 secret
    /// 20 21 .. 3f is SHA-512 of the 64 bytes 00 .. 3f (computed
    /// independently with Python's hashlib).
    #[test]
    fn combined_secret_known_answer() {
        let sntrup_key: Vec<u8> = (0u8..32).collect();
        let mut x25519 = [0u8; 32];
        for (i, b) in x25519.iter_mut().enumerate() {
            *b = 32 + i as u8;
        }
        let k = combine_secrets(&sntrup_key, &x25519);
        assert_eq!(
            data_encoding::HEXLOWER.encode(k.as_slice()),
            "ee4320ebaf3fdb4f2c832b137200c08e235e0fa7bbd0eb1740c7063ba8a0d151\
             da77e003398e1714a955d475b05e3e950b639503b452ec185de4229bc4873949"
        );
    }

    #[test]
    fn client_and_server_agree() {
        let mut client = Sntrup761X25519Kex::default();
        let mut server = Sntrup761X25519Kex::default();
        let mut client_ephemeral = Vec::new();
        let mut init = Vec::new();
        client.client_dh(&mut client_ephemeral, &mut init).unwrap();
        assert_eq!(
            client_ephemeral.len(),
            SNTRUP761_PUBLIC_KEY_SIZE + X25519_PUBLIC_KEY_SIZE
        );

        let mut exchange = Exchange {
            client_ephemeral: client_ephemeral.clone(),
            ..Exchange::default()
        };
        server.server_dh(&mut exchange, &init).unwrap();
        assert_eq!(
            exchange.server_ephemeral.len(),
            SNTRUP761_CIPHERTEXT_SIZE + X25519_PUBLIC_KEY_SIZE
        );
        client
            .compute_shared_secret(&exchange.server_ephemeral)
            .unwrap();
        assert_eq!(client.shared_secret_bytes(), server.shared_secret_bytes());
        assert_eq!(client.shared_secret_bytes().unwrap().len(), 64);

        let mut buffer = CryptoVec::new();
        let h_client = client
            .compute_exchange_hash(b"key", &exchange, &mut buffer)
            .unwrap();
        let h_server = server
            .compute_exchange_hash(b"key", &exchange, &mut buffer)
            .unwrap();
        assert_eq!(h_client, h_server);
        assert_eq!(h_client.len(), 64, "SHA-512 exchange hash");
    }

    #[test]
    fn refuses_bad_lengths_and_truncated_messages() {
        let mut server = Sntrup761X25519Kex::default();
        let mut exchange = Exchange::default();
        assert!(server.server_dh(&mut exchange, &[]).is_err());
        assert!(server.server_dh(&mut exchange, &[30, 0, 0]).is_err());
        assert!(
            server
                .server_dh(&mut exchange, &[30, 0, 0, 0xff, 0xff, 1, 2])
                .is_err()
        );
        let mut short = vec![30];
        vec![0u8; 100].as_slice().encode(&mut short).unwrap();
        assert!(server.server_dh(&mut exchange, &short).is_err());

        let mut client = Sntrup761X25519Kex::default();
        let (mut eph, mut init) = (Vec::new(), Vec::new());
        client.client_dh(&mut eph, &mut init).unwrap();
        assert!(client.compute_shared_secret(&[0u8; 100]).is_err());
    }

    #[test]
    fn refuses_low_order_x25519() {
        let mut client = Sntrup761X25519Kex::default();
        let (mut eph, mut init) = (Vec::new(), Vec::new());
        client.client_dh(&mut eph, &mut init).unwrap();
        // The identity point: every X25519 result with it is zero.
        let reply = vec![0u8; SNTRUP761_CIPHERTEXT_SIZE + X25519_PUBLIC_KEY_SIZE];
        assert!(client.compute_shared_secret(&reply).is_err());
    }
}
