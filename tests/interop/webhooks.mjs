// Wix's own SDK verifying webhooks: each case of a corpus made by
// tests/integration/interop.rs goes through AppStrategy({publicKey}) and
// client.webhooks.process(), and the verdicts are printed as JSON.
//   CORPUS  path to [{ name, token, key }]
import { readFileSync } from 'node:fs';

import { AppStrategy, createClient } from '@wix/sdk';

const corpus = JSON.parse(readFileSync(process.env.CORPUS, 'utf8'));
const verdicts = {};
for (const { name, token, key } of corpus) {
  try {
    const client = createClient({ auth: AppStrategy({ appId: 'mock-app', publicKey: key }) });
    const event = await client.webhooks.process(token);
    verdicts[name] = `accepted ${event.eventType}`;
  } catch (error) {
    verdicts[name] = `refused: ${String(error?.message ?? error).slice(0, 80)}`;
  }
}
console.log(JSON.stringify(verdicts));
