// Wix's own SDK verifying service-plugin calls: each case of a corpus made
// by tests/integration/interop.rs goes through AppStrategy({appId,
// publicKey}) and client.servicePlugins.parseJWT() (what process() and
// processRequest() run first), and the verdicts are printed as JSON.
//   CORPUS  path to [{ name, token, key, appId }]
import { readFileSync } from 'node:fs';

import { AppStrategy, createClient } from '@wix/sdk';

const corpus = JSON.parse(readFileSync(process.env.CORPUS, 'utf8'));
const verdicts = {};
for (const { name, token, key, appId } of corpus) {
  try {
    const client = createClient({ auth: AppStrategy({ appId, publicKey: key }) });
    const request = await client.servicePlugins.parseJWT(token);
    verdicts[name] = `accepted ${request.metadata.appExtensionType}`;
  } catch (error) {
    verdicts[name] = `refused: ${String(error?.message ?? error).slice(0, 80)}`;
  }
}
console.log(JSON.stringify(verdicts));
