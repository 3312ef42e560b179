// A real OpenID Connect provider (panva's oidc-provider) for tests/test_oidc_interop.py.
//
//   node tests/oidc/provider.mjs PORT        (or PORT=... node tests/oidc/provider.mjs)
//
// Serves the issuer http://127.0.0.1:PORT (plain http: loopback only) and prints
// "ready <issuer>" once it listens. Machine-to-machine only: the client credentials
// grant, no users, no login pages. What it issues is what the generated service is
// tested against:
//
// * two resource servers (RFC 8707 resource indicators), each one's indicator being
//   the `aud` of its tokens: the service under test (SERVICE_AUDIENCE) and another
//   service (OTHER_AUDIENCE), for a token that is valid but not meant for ours;
// * the scopes items:read and items:write, granted as the request's `scope` asks;
// * access tokens as JWTs (RFC 9068, typ at+jwt) signed RS256 with a key made at
//   start, published at jwks_uri;
// * two confidential clients with the same rights: "orders-client", whose tokens live
//   TOKEN_TTL seconds, and "short-lived-client", whose tokens live SHORT_TOKEN_TTL
//   seconds (default 2), for the test that waits for a token to expire.
//
// Everything is in memory and gone when the process stops.

import { generateKeyPairSync } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.mjs PORT (or set PORT)');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const SERVICE_AUDIENCE = 'urn:orders-service';
const OTHER_AUDIENCE = 'urn:billing-service';
const SCOPES = 'items:read items:write';
const TOKEN_TTL = Number(process.env.TOKEN_TTL ?? 300);
const SHORT_TOKEN_TTL = Number(process.env.SHORT_TOKEN_TTL ?? 2);

// A signing key of this run only: a test never sees a key that another run trusted.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `rs256-${port}`, alg: 'RS256', use: 'sig' };

// Same grant, same rights; only the tokens' lifetime differs (see ttl below).
const client = (clientId) => ({
  client_id: clientId,
  client_secret: `${clientId}-secret-of-the-interop-test`,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
});

const resourceServers = {
  [SERVICE_AUDIENCE]: { audience: SERVICE_AUDIENCE, scope: SCOPES },
  [OTHER_AUDIENCE]: { audience: OTHER_AUDIENCE, scope: SCOPES },
};

const provider = new Provider(issuer, {
  clients: [client('orders-client'), client('short-lived-client')],
  jwks: { keys: [signingKey] },
  features: {
    // No users here: the authorization endpoint's development login pages stay off.
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request names its resource: one without gets an opaque token of the
      // provider's own, not a JWT for either service.
      defaultResource: () => undefined,
      getResourceServerInfo(ctx, resourceIndicator) {
        const server = resourceServers[resourceIndicator];
        if (!server) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return { ...server, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  ttl: {
    ClientCredentials(ctx, token, tokenClient) {
      return tokenClient.clientId === 'short-lived-client' ? SHORT_TOKEN_TTL : TOKEN_TTL;
    },
  },
});

// What went wrong at the provider is in the test's provider log.
for (const event of ['grant.error', 'server_error']) {
  provider.on(event, (ctx, error) => console.error(`${event}: ${error.message} ${error.error_description ?? ''}`));
}

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
