// Prints a GGUF file's metadata and tensor infos as JSON, read by
// @huggingface/gguf (not ladle's code): tests/py/test_gguf.py compares them.
import { gguf } from "@huggingface/gguf";

const { metadata, tensorInfos } = await gguf(process.argv[2], { allowLocalFile: true });
const plain = (k, v) => (typeof v === "bigint" ? v.toString() : v);
console.log(JSON.stringify({ metadata, tensorInfos }, plain));
