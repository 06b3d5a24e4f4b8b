// A real OpenID provider (panva's oidc-provider) on 127.0.0.1 for the sign-in browser tests.
// Run by backend/tests/web/oidc_provider.py with one JSON argument: the port, the portal's
// client registration and the test user. devInteractions gives real login and consent pages
// (any login, any password). Never shipped: a test tool only.
import Provider from "oidc-provider";

const config = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${config.port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    post_logout_redirect_uris: [config.post_logout_redirect_uri],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  // Whatever login is typed signs in the test user (their claims from the test).
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, ...config.user }),
  }),
  claims: {
    openid: ["sub"], profile: ["name"], email: ["email", "email_verified"], groups: ["groups"],
  },
  scopes: ["openid", "offline_access", "profile", "email", "groups"],
  // The portal reads the user's claims from the ID token, as Keycloak and Entra ID put them.
  conformIdTokenClaims: false,
  // A refresh token without offline_access (which would add a consent step of its own).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed("refresh_token"),
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: {
    AccessToken: config.access_token_seconds,
    IdToken: 3600,
    RefreshToken: 3600,
    Session: 3600,
    Grant: 3600,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  cookies: { keys: ["oidc-provider-test-cookie-key"] },
});
provider.proxy = false;

provider.listen(config.port, "127.0.0.1", () => {
  process.stdout.write(`ready ${issuer}\n`);
});
